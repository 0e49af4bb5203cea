"""`Sequential`: a stack of layers with Keras's weight layout, its default loss reduction, and batch backprop.

    forward:   A_0 = X,  A_l = layer_l(A_{l-1})                      X (N, D) -> P (N, K)
    loss:      L = (1/N) sum_i w_i l_i(Y_i, P_i)
    backward:  dA_L = dL/dP, then dA_{l-1} = layer_l.backward(dA_l)  down to dX = dL/dX (N, D)

When the loss fuses with the output activation (softmax + categorical cross-entropy, as Keras does through the
logits a softmax output carries), the loss is computed from the output layer's logits Z and backprop starts at
dZ = (P - Y) / N, skipping the softmax Jacobian. Layers above it that return their input unchanged in this mode
(`Layer.passes_through`: an inactive Dropout) keep the logits attached, as Keras's tensors do.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from from_scratch.arch import Architecture, LayerSpec
from from_scratch.errors import BadInputError, a_or_an, check_count, check_seed, unknown_name
from from_scratch.layers import LAYERS, Dense, Layer, Shape, as_shape
from from_scratch.losses import Loss, get_loss
from from_scratch.optimizers import Optimizer, get_optimizer
from from_scratch.watch import Watch

Array = np.ndarray

DTYPES = ("float64", "float32")


@dataclass
class BackwardPass:
    """Everything one forward + backward pass produced.

    loss: the reduced loss; grads: dL/dparam aligned with `get_weights()`; input_grad: dL/dX (N, D), or None when
    it was not asked for;
    output: the model output P (N, K); logits_at: the index of the layer whose logits Z the loss was computed
    from (the fused path), or None;
    records: per layer, its output "A", the gradient that reached it "dA" (absent on the fused path for the logits
    layer and the pass-through layers above it) and the layer's own named intermediates (`Layer.record()`: Dense
    adds "Z" and "dZ").
    """

    loss: float
    grads: list[Array]
    input_grad: Array | None
    output: Array
    logits_at: int | None
    records: list[dict[str, Array]]

    @property
    def fused(self) -> bool:
        """Whether the loss was computed from logits (Keras's hidden-logits path)."""
        return self.logits_at is not None


class Sequential:
    """A stack of layers built for inputs of `input_shape` (without the batch axis) in `dtype`, from `seed`.

    Any `from_scratch.Layer` goes in, shipped or user-defined; `input_dim=D` is the shorthand for
    input_shape=(D,). Weights follow Keras's order [W1, b1, W2, b2, ...] with kernels (in, out) and biases (out,).

    `watch`: None, or a `from_scratch.watch.Watch` that the passes (`backward_pass`, `forward`) report protocol
    breaches to: a layer that wrote into what it was handed, or returned another dtype (the comparison harness sets
    one for its own passes; a copy made by `astype` starts without).
    """

    watch: Watch | None = None

    def __init__(
        self,
        layers: Sequence[Layer],
        input_dim: int | None = None,
        dtype: str = "float64",
        seed: int | None = 0,
        *,
        input_shape: Shape | int | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise BadInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if (input_dim is None) == (input_shape is None):
            raise BadInputError("give exactly one of input_shape=(...) and input_dim=D")
        shape = as_shape(input_dim, "input_dim") if input_shape is None else as_shape(input_shape)
        if not isinstance(layers, (list, tuple)) or not layers:
            raise BadInputError("a Sequential model takes a non-empty list of layers")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise BadInputError(
                    f"layer {i} is {a_or_an(type(layer).__name__)}, not a from_scratch.Layer: subclass Layer and "
                    "give it build(input_shape, dtype, rng), forward(x, training=False), backward(dy), params and "
                    "grads"
                )
        self.layers = list(layers)
        self.input_shape = shape
        self.dtype = np.dtype(dtype)
        self.seed = check_seed("Sequential", seed)
        rng = np.random.default_rng(seed)
        counts: dict[str, int] = {}
        self.layer_input_shapes: list[Shape] = []
        self.layer_output_shapes: list[Shape] = []
        for layer in self.layers:
            self.layer_input_shapes.append(shape)
            n = counts.get(layer.kind, 0)
            counts[layer.kind] = n + 1
            layer.name = layer.kind if n == 0 else f"{layer.kind}_{n}"  # Keras's names in a fresh session
            built = layer.build(shape, self.dtype, rng)
            shape = as_shape(built, f"layer {layer.name!r}: build() must return the output shape, it returned")
            _check_declarations(layer)
            self.layer_output_shapes.append(shape)
        self.output_shape = shape

    @property
    def input_dim(self) -> int:
        """The width D of 1-D inputs (N, D)."""
        return self.input_shape[0] if len(self.input_shape) == 1 else int(np.prod(self.input_shape))

    @property
    def output_dim(self) -> int:
        """The width K of 1-D outputs (N, K)."""
        return self.output_shape[-1]

    @classmethod
    def from_architecture(cls, arch: Architecture, dtype: str = "float64", seed: int | None = 0) -> Sequential:
        """Build the model that `arch` describes (the same description builds the Keras twin); a string is parsed
        as Architecture.parse reads it."""
        if isinstance(arch, str):
            arch = Architecture.parse(arch)
        if not isinstance(arch, Architecture):
            raise BadInputError(
                f"from_architecture takes an Architecture or its text, got {a_or_an(type(arch).__name__)}"
            )
        layers = []
        for spec in arch.layers:
            if spec.kind not in LAYERS:
                raise unknown_name("layer", spec.kind, LAYERS)
            layers.append(LAYERS[spec.kind].from_spec(spec))
        return cls(layers, input_shape=arch.input_shape, dtype=dtype, seed=seed)

    @property
    def architecture(self) -> Architecture:
        """The description of this model, from which `keras_impl.build_model` builds its twin."""
        custom = [layer.name for layer in self.layers if not hasattr(layer, "spec")]
        if custom:
            raise BadInputError(
                f"this model has no architecture description: layer(s) {', '.join(custom)} are not registry "
                "layers; compare it with compare.check_model"
            )
        specs: tuple[LayerSpec, ...] = tuple(layer.spec() for layer in self.layers)
        return Architecture.of_shape(self.input_shape, specs)

    def astype(self, dtype: str) -> Sequential:
        """The same model in `dtype`: each layer copied and built again, then these weights set (exactly: float32
        to float64 is exact, and set_weights refuses a rounding cast). Fixed dropout masks carry over."""
        model = Sequential(
            [copy.deepcopy(layer) for layer in self.layers], dtype=dtype, seed=self.seed, input_shape=self.input_shape
        )
        model.set_weights(self.get_weights())
        for ours, theirs in zip(self.layers, model.layers):
            if getattr(ours, "fixed_mask", None) is not None:
                theirs.fix_mask(ours.fixed_mask)
        return model

    # ----- weights -------------------------------------------------------------------------------------------
    def get_weights(self) -> list[Array]:
        """Copies of every parameter, in Keras's order [W1, b1, W2, b2, ...]."""
        return [p.copy() for layer in self.layers for p in layer.params]

    def set_weights(self, weights: Sequence[Array]) -> None:
        """Replace every parameter; count, shape and dtype must match (a float64 array is never rounded into a
        float32 model; float32 into float64 is exact and accepted)."""
        slots = [(layer, i, p) for layer in self.layers for i, p in enumerate(layer.params)]
        if not isinstance(weights, (list, tuple)):
            raise BadInputError(
                f"set_weights takes a list of arrays (as get_weights() gives), got {a_or_an(type(weights).__name__)}"
            )
        if len(weights) != len(slots):
            raise BadInputError(f"set_weights: expected {len(slots)} arrays, got {len(weights)}")
        for (layer, i, current), new in zip(slots, weights):
            new = _as_array(f"set_weights: layer {layer.name!r} parameter {i}", new)
            where = f"set_weights: layer {layer.name!r} parameter {i}"
            if new.shape != current.shape:
                raise BadInputError(f"{where}: expected shape {current.shape}, got {new.shape}")
            _check_numbers(where, new)
            if not np.issubdtype(new.dtype, np.floating) or np.finfo(new.dtype).bits > self.dtype.itemsize * 8:
                raise BadInputError(
                    f"{where}: dtype {new.dtype} does not fit a {self.dtype} model without rounding; "
                    f"convert it explicitly (e.g. .astype('{self.dtype}'))"
                )
        flat = iter(np.array(w, dtype=self.dtype) for w in weights)
        for layer in self.layers:
            for p in layer.params:
                p[...] = next(flat)

    # ----- forward and backward ------------------------------------------------------------------------------
    def _as_input(self, x: Array) -> Array:
        """X (N, *input_shape) as the model dtype (cast as Keras casts inputs); refuses a wrong shape, an empty
        batch, non-numbers and NaN or infinity."""
        x = _as_array("input", x)
        if x.ndim != 1 + len(self.input_shape) or x.shape[1:] != self.input_shape:
            expected = ", ".join(["N", *map(str, self.input_shape)])
            raise BadInputError(f"input: expected shape ({expected}), got {x.shape}")
        _check_numbers("input", x)
        _check_fits_dtype("input", x, self.dtype)
        return x.astype(self.dtype, copy=False)

    def _as_targets(self, y: Array, loss: Loss, n: int) -> Array:
        """Labels checked against the loss (shape, one-hot rows, class range, [0, 1]) and cast to the dtype."""
        y = np.asarray(y)
        _check_numbers("labels", y)
        if y.ndim == 0 or y.shape[0] != n:
            raise BadInputError(f"labels: {y.shape[0] if y.ndim else 'a scalar'} rows for a batch of {n} inputs")
        loss.check_targets(y, self.output_dim)
        return y.astype(self.dtype, copy=False)

    def _as_sample_weight(self, sample_weight: Array | None, n: int) -> Array | None:
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight)
        _check_numbers("sample_weight", w)
        if w.shape != (n,):
            raise BadInputError(f"sample_weight: expected shape ({n},), one weight per sample, got {w.shape}")
        return w.astype(self.dtype, copy=False)

    def forward(self, x: Array, training: bool = False) -> Array:
        """A_l = layer_l(A_{l-1}) from A_0 = X.  X (N, D) -> output (N, K)."""
        a = self._as_input(x)
        if self.watch is not None:
            return self._watched_forward(a, training)[0]
        for layer in self.layers:
            a = layer.forward(a, training=training)
        return a

    def _watched_forward(self, x: Array, training: bool) -> tuple[Array, list[Array], list[Array]]:
        """The forward pass under `watch`: (output, the array handed to each layer, each layer's output as the
        records keep it). The first layer gets a copy of x (the caller's array is never handed to a layer); after
        each call the argument is checked unchanged (a layer that wrote into it is reported, and the record of the
        layer below keeps what that layer returned) and the output's shape, kind and dtype are checked."""
        watch = self.watch
        watch.start()
        call = f"forward(training={training})"
        a = x.copy()
        handed, outputs = [], []
        for i, (layer, shape) in enumerate(zip(self.layers, self.layer_output_shapes)):
            watch.keep(a)
            handed.append(a)
            out = layer.forward(a, training=training)
            watch.calls += 1
            before = watch.unchanged(layer, call, "x", a)
            if i > 0 and before is not a:
                outputs[i - 1] = before  # the record of the layer below: what it returned, not what this one left
            _check_shape(layer, "forward() returned", out, (len(x), *shape))
            a = watch.result(layer, call, "its output", out, self.dtype)
            outputs.append(a)
        if self.layers:
            watch.keep(a)
        return a, handed, outputs

    def predict(self, x: Array) -> Array:
        """The model output in inference mode.  X (N, D) -> (N, K)."""
        return self.forward(x, training=False)

    def logits_layer(self, loss: Loss, training: bool = True) -> int | None:
        """The index of the Dense layer whose logits `loss` is computed from (Keras's hidden-logits path), or None.

        Keras attaches the logits to a softmax/sigmoid output tensor; a layer that returns that same tensor (an
        inactive Dropout: `passes_through(training)`) keeps them attached, so the search starts at the output
        and steps down past such layers."""
        i = len(self.layers) - 1
        while i > 0 and self.layers[i].passes_through(training):
            i -= 1
        layer = self.layers[i]
        return i if isinstance(layer, Dense) and layer.activation.name in loss.fuses_with else None

    def fuses(self, loss: Loss, training: bool = True) -> bool:
        """Whether `loss` is computed from logits (`logits_layer`) in a pass in this mode."""
        return self.logits_layer(loss, training) is not None

    def backward_pass(
        self,
        x: Array,
        y: Array,
        loss: str | Loss = "categorical_crossentropy",
        sample_weight: Array | None = None,
        input_grad: bool = True,
    ) -> BackwardPass:
        """One forward pass in training mode and one backward pass over the whole batch.

        input_grad=False skips dL/dX (the first layer's dZ @ W.T), which a training step does not need.
        """
        loss = get_loss(loss)
        a = self._as_input(x)
        records: list[dict[str, Array]] = []
        handed: list[Array] = []
        if self.watch is not None:
            a, handed, outputs = self._watched_forward(a, True)
            records = [{"A": out} for out in outputs]
            handed.append(a)
        else:
            for layer, shape in zip(self.layers, self.layer_output_shapes):
                a = layer.forward(a, training=True)
                _check_shape(layer, "forward() returned", a, (len(x), *shape))
                records.append({"A": a})
        output = a
        y = self._as_targets(y, loss, len(output))
        sample_weight = self._as_sample_weight(sample_weight, len(output))
        at = self.logits_layer(loss)
        penalty = sum(layer.regularization() for layer in self.layers)  # Keras adds model.losses to the loss
        if at is not None:  # the layers above `at` pass its output through: backprop starts at its dZ
            logits = self.layers[at]
            value = loss.from_logits_value(y, logits.Z, sample_weight)
            dZ = loss.gradient_from_logits(y, logits.Z, sample_weight)
            if self.watch is not None:
                self.watch.keep(dZ)
            dX = logits.backward_from_z(dZ, input_grad or at > 0)
            if self.watch is not None:
                dX = self._check_backward(at, "dZ", dZ, dX, handed)
            below = at - 1
        else:
            value = loss(y, output, sample_weight)
            below = len(self.layers) - 1
            dX = self._backward(
                below, loss.gradient(y, output, sample_weight), records[-1], input_grad or below > 0, handed
            )
            below -= 1
        for i in range(below, -1, -1):  # does the layer below need this layer's dX?
            dX = self._backward(i, dX, records[i], input_grad or i > 0, handed)
        for layer, record in zip(self.layers, records):
            record.update({key: v for key, v in layer.record().items() if v is not None})  # fresh each pass
            _check_grads(layer)
        if self.watch is None:
            grads = [g for layer in self.layers for g in layer.grads]
        else:
            grads = [
                self.watch.result(layer, "backward", f"the gradient of {name}", g, self.dtype)
                for layer in self.layers
                for name, g in zip(layer.param_names(), layer.grads)
            ]
        return BackwardPass(float(value + penalty), grads, dX, output, at, records)

    def _backward(
        self, i: int, dA: Array, record: dict[str, Array], input_grad: bool, handed: Sequence[Array] = ()
    ) -> Array | None:
        """Layer i's backward(dA), skipping dL/dX where nothing needs it and the layer allows it; records dA and
        checks that dL/dX has the layer's input shape. Under `watch` (`handed`: the array handed to each layer in
        the forward pass, then the output) also that dA, the layer's input and its output are unchanged, and dL/dX's
        kind and dtype."""
        layer = self.layers[i]
        record["dA"] = dA
        if self.watch is not None:
            self.watch.keep(dA)
        if not input_grad and layer.input_grad_optional:
            dX = layer.backward(dA, input_grad=False)
        else:
            dX = layer.backward(dA)
            _check_shape(layer, "backward() returned dL/dX", dX, (len(dA), *self.layer_input_shapes[i]))
        if self.watch is not None:
            dX = self._check_backward(i, "dy", dA, dX, handed)
        return dX

    def _check_backward(self, i: int, argument: str, dy: Array, dX: Array | None, handed: Sequence[Array]) -> Any:
        """After layer i's backward under `watch`: dy (its `argument`), its input and its output unchanged; dL/dX
        (when returned) of the model's kind and dtype."""
        layer, watch = self.layers[i], self.watch
        watch.calls += 1
        watch.unchanged(layer, "backward", argument, dy)
        watch.unchanged(layer, "backward", "x", handed[i])
        watch.unchanged(layer, "backward", "y", handed[i + 1])
        return watch.result(layer, "backward", "dL/dX", dX, self.dtype)

    def loss_and_gradients(
        self, x: Array, y: Array, loss: str | Loss = "categorical_crossentropy", sample_weight: Array | None = None
    ) -> tuple[float, list[Array]]:
        """(L, [dL/dW1, dL/db1, ...]): the loss reduced as Keras does by default and its gradients, aligned one to
        one with `get_weights()`."""
        result = self.backward_pass(x, y, loss, sample_weight, input_grad=False)
        return result.loss, result.grads

    # ----- training -----------------------------------------------------------------------------------------
    @property
    def trainable(self) -> list[bool]:
        """One flag per entry of get_weights(): False for moving statistics."""
        return [t for layer in self.layers for t in layer.param_trainable()]

    def weight_names(self) -> list[str]:
        """Keras-style variable paths aligned with get_weights(): dense/kernel, dense/bias, dense_1/kernel, ..."""
        return [f"{layer.name}/{label}" for layer in self.layers for label in layer.param_names()]

    def compile(
        self,
        optimizer: str | Optimizer = "sgd",
        loss: str | Loss = "categorical_crossentropy",
        metrics: Sequence[str] = (),
    ) -> None:
        """Choose the optimizer, the loss and the metrics ("accuracy") that `fit` and `train_step` use."""
        if not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) for m in metrics):
            raise BadInputError(f"compile: metrics must be a list of names such as ['accuracy'], got {metrics!r}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise unknown_name("metric", unknown[0], METRICS)
        self.optimizer = get_optimizer(optimizer)
        self.loss = get_loss(loss)
        self.metrics = list(metrics)

    def train_step(self, x: Array, y: Array) -> float:
        """One step on one batch: forward, backward, optimizer update. Returns the batch loss before the update."""
        self._check_compiled("train_step")
        result = self.backward_pass(x, y, self.loss, input_grad=False)
        self.optimizer.update([p for layer in self.layers for p in layer.params], result.grads, self.trainable)
        self.last_output = result.output
        return result.loss

    def _check_compiled(self, what: str) -> None:
        if not hasattr(self, "optimizer"):
            raise BadInputError(f"{what}: call compile(optimizer=..., loss=...) first")

    def evaluate(self, x: Array, y: Array) -> dict[str, float]:
        """Loss (inference mode) and metrics on (x, y)."""
        self._check_compiled("evaluate")
        output = self.predict(x)
        y = self._as_targets(y, self.loss, len(output))
        logs = {"loss": float(self._inference_loss(y, output))}
        for name in self.metrics:
            logs[name] = METRICS[name](self.loss.prepare_targets(y, output), output)
        return logs

    def _inference_loss(self, y: Array, output: Array) -> float:
        at = self.logits_layer(self.loss, training=False)
        if at is not None:
            return self.loss.from_logits_value(y, self.layers[at].Z)
        return self.loss(y, output)

    def fit(
        self,
        x: Array,
        y: Array,
        batch_size: int = 32,
        epochs: int = 1,
        shuffle: bool = True,
        validation_data: tuple[Array, Array] | None = None,
        seed: int | None = None,
    ) -> History:
        """Minibatch training as keras.Model.fit: each epoch visits the samples (shuffled with a seeded NumPy
        generator when `shuffle`) in batches of `batch_size`, the last one partial. The history records, per
        epoch, the batch losses' mean weighted by batch size (as Keras's loss tracker) and the metrics."""
        batch_size = check_count("fit", "batch_size", batch_size)
        if validation_data is not None and not (isinstance(validation_data, tuple) and len(validation_data) == 2):
            raise BadInputError(f"fit: validation_data must be a tuple (x, y), got {validation_data!r:.60}")
        epochs = check_count("fit", "epochs", epochs, low=0)
        x = self._as_input(x)
        y = np.asarray(y)
        if y.ndim == 0 or len(x) != len(y):
            raise BadInputError(f"fit: {len(x)} input rows but {len(y) if y.ndim else 'no'} label rows")
        if not hasattr(self, "optimizer"):
            raise BadInputError("fit: call compile(optimizer=..., loss=...) first")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        history = History()
        for _ in range(epochs):
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            total, seen, correct = 0.0, 0, 0.0
            for start in range(0, len(x), batch_size):
                rows = order[start : start + batch_size]
                total += self.train_step(x[rows], y[rows]) * len(rows)
                seen += len(rows)
                if "accuracy" in self.metrics:
                    yb = self.loss.prepare_targets(np.asarray(y[rows]).astype(self.dtype), self.last_output)
                    correct += METRICS["accuracy"](yb, self.last_output) * len(rows)
            logs = {"loss": total / seen}
            if "accuracy" in self.metrics:
                logs["accuracy"] = correct / seen
            if validation_data is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate(*validation_data).items()})
            history.append(logs)
        return history


def _as_array(what: str, value: Any) -> Array:
    """np.asarray(value), with a ragged list or another non-array refused as bad input."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{what}: not an array of numbers ({exc})") from None


def _check_declarations(layer: Layer) -> None:
    """After build: `params` is a list of arrays, and `weight_names` / `trainable` (when declared) have one entry
    per parameter."""
    params = layer.params
    if not isinstance(params, (list, tuple)) or not all(isinstance(p, np.ndarray) for p in params):
        raise BadInputError(f"layer {layer.name!r}: params must be a list of NumPy arrays, got {params!r:.80}")
    for what, declared in (("weight_names", layer.weight_names), ("trainable", layer.trainable)):
        if declared is not None and len(declared) != len(params):
            raise BadInputError(
                f"layer {layer.name!r}: {what} has {len(declared)} entries for {len(params)} parameter(s)"
            )
    if params and (layer.passes_through(True) or layer.passes_through(False)):
        raise BadInputError(
            f"layer {layer.name!r}: passes_through() is True but the layer has {len(params)} parameter(s); a layer "
            "that returns its input unchanged has none"
        )


def _check_shape(layer: Layer, what: str, value: Any, shape: tuple[int, ...]) -> None:
    """A layer's forward output or backward dL/dX must be an array of the shape the protocol promises."""
    if not isinstance(value, np.ndarray) or value.shape != shape:
        got = f"shape {value.shape}" if isinstance(value, np.ndarray) else a_or_an(type(value).__name__)
        raise BadInputError(f"layer {layer.name!r}: {what} {got}, expected shape {shape}")


def _check_grads(layer: Layer) -> None:
    """After backward, `grads` holds one array per entry of `params`, each of its parameter's shape."""
    params, grads = layer.params, layer.grads
    if len(grads) != len(params):
        raise BadInputError(
            f"layer {layer.name!r}: grads has {len(grads)} array(s) for {len(params)} parameter(s); backward must "
            "leave dL/dparam in grads, aligned with params"
        )
    for name, p, g in zip(layer.param_names(), params, grads):
        if np.shape(g) != np.shape(p):
            raise BadInputError(
                f"layer {layer.name!r}: the gradient of {name} has shape {np.shape(g)}, its parameter {np.shape(p)}"
            )


def _check_fits_dtype(what: str, a: Array, dtype: np.dtype) -> None:
    """Refuse values that the cast to the model's dtype would turn into infinity (float64 beyond float32's range
    into a float32 model): the cast would not be rounding but a silent inf, then NaN."""
    if np.issubdtype(a.dtype, np.floating) and np.finfo(a.dtype).max > np.finfo(dtype).max:
        over = np.abs(a) > np.finfo(dtype).max
        if over.any():
            index = tuple(int(i) for i in np.argwhere(over)[0])
            raise BadInputError(
                f"{what}: {a[index].item()!r} at index {index} is beyond the range of {dtype} "
                f"(+-{np.finfo(dtype).max:.4g})"
            )


def _check_numbers(what: str, a: Array) -> None:
    """Refuse arrays that are not real numbers, are empty, or hold NaN or infinity (naming the first bad entry)."""
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise BadInputError(f"{what}: expected real numbers, got dtype {a.dtype}")
    if a.size == 0:
        raise BadInputError(f"{what}: empty (shape {a.shape}); a batch needs at least one sample")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise BadInputError(f"{what}: {a[index]} at index {index}; NaN and infinity are refused")


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
