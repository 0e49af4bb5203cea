"""The backward pass of a `from_scratch.graph.Model`: `Backprop`, the mixin that runs every node's backward in reverse
topological order after one training-mode forward pass, and `BackwardPass`, everything that pass produced.

    dL/dT_u = sum over the consumers v of u of (dT_v/dT_u)^T dL/dT_v        a fan-out sums its gradients (`_fan_in`)
    dL/dW   = sum over the calls of a shared layer of (dL/dW)_call           (`_add_call`)

Several outputs start their own sweeps at w_o dL_o/dP_o (a softmax or sigmoid output under a cross-entropy at its
logits' dL/dZ, the fused path); the sweeps meet where their gradients add up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from from_scratch.checks import check_grads, check_shape
from from_scratch.errors import BadInputError, a_or_an
from from_scratch.losses import OutputLosses
from from_scratch.threads import LayerThreads

Array = np.ndarray


@dataclass
class BackwardPass:
    """Everything one forward + backward pass produced.

    loss: the reduced loss; grads: dL/dparam aligned with `get_weights()`; input_grad: dL/dX (N, D) (a list, one
    per input, for a model of several inputs), or None when it was not asked for; output: the model output P (a list
    for several outputs); logits_at: the index of the node whose logits Z the loss was computed from (the fused
    path; the first such node of a model of several outputs), or None; fused_at: every such node;
    records: per node, in the model's order, its output "A", the gradient that reached it "dA" (absent where no
    gradient arrives: the fused logits node and the pass-through layers above it) and the layer's own named
    intermediates (`Layer.record()`: Dense adds "Z" and "dZ"); where the backward ran, what the node sent back to
    its inputs "dX" (a list for a merge), before the fan-out sums add it to their other gradients, and for a shared
    layer that call's own parameter gradients "grads", before the sum over its calls.
    """

    loss: float
    grads: list[Array]
    input_grad: Array | list[Array] | None
    output: Array | list[Array]
    logits_at: int | None
    records: list[dict[str, Array]]
    fused_at: tuple[int, ...] = ()

    @property
    def fused(self) -> bool:
        """Whether the loss was computed from logits (Keras's hidden-logits path)."""
        return self.logits_at is not None


class Backprop:
    """Backpropagation over the graph of a model that runs its nodes forward (`_run`, `_restore`: the graph's
    `Model`) and checks what it is handed (`Feeding`)."""

    def backward_pass(
        self,
        x: Any,
        y: Any,
        loss: Any = "categorical_crossentropy",
        sample_weight: Array | None = None,
        input_grad: bool = True,
        loss_weights: Sequence[float] | None = None,
    ) -> BackwardPass:
        """One forward pass in training mode and one backward pass over the whole batch.

        `loss`: one loss for every output, or a list with one per output; `loss_weights`: w_o per output (the loss
        is sum_o w_o L_o). input_grad=False skips dL/dX where only the inputs would need it (a training step)."""
        losses = self._losses(loss)
        if loss_weights is None and isinstance(loss, OutputLosses):
            loss_weights = loss.weights
        weights = self._loss_weights(loss_weights)
        outputs, records, handed = self._run(self._as_inputs(x), True)
        ys = self._as_targets_all(y, losses, outputs)
        sample_weight = self._as_sample_weight(sample_weight, len(outputs[0]))
        penalty = sum(layer.regularization() for layer in self.layers)  # Keras adds model.losses to the loss
        total = 0.0
        grads_at: dict[int, Array] = {}
        fused: dict[int, Array] = {}
        for o, (t, loss_o, y_o, p_o, w) in enumerate(zip(self.outputs, losses, ys, outputs, weights)):
            at = self.logits_node(o, loss_o)
            if at is not None:
                self._restore(at)
                z = self.nodes[at].layer.Z
                value = loss_o.from_logits_value(y_o, z, sample_weight)
                g = loss_o.gradient_from_logits(y_o, z, sample_weight)
                target = fused
                key = at
            else:
                value = loss_o(y_o, p_o, sample_weight)
                g = loss_o.gradient(y_o, p_o, sample_weight)
                target = grads_at
                key = id(t)
            if w is not None:
                value, g = value * w, g * self.dtype.type(w)
            total = total + value
            self._fan_in(target, key, g)
        summed: dict[int, list[Array]] = {}
        done = set()
        with LayerThreads() as threads:
            for i in range(len(self.nodes) - 1, -1, -1):
                if self._backward_node(i, threads, grads_at, fused, records, handed, summed, input_grad):
                    done.add(i)
        for i, (node, record) in enumerate(zip(self.nodes, records)):
            if i not in done:
                record.update({key: v for key, v in node.layer.record().items() if v is not None})
        grads = self._gradients(summed)
        if input_grad:
            n = len(outputs[0])
            dxs = [grads_at.get(id(t)) for t in self.inputs]
            dxs = [np.zeros((n, *t.shape), self.dtype) if g is None else g for g, t in zip(dxs, self.inputs)]
            input_grads: Any = dxs[0] if len(dxs) == 1 else dxs
        else:
            input_grads = None
        fused_at = tuple(sorted(fused))
        return BackwardPass(
            float(total + penalty),
            grads,
            input_grads,
            outputs[0] if len(outputs) == 1 else outputs,
            fused_at[0] if fused_at else None,
            records,
            fused_at,
        )

    def _backward_node(
        self,
        i: int,
        threads: LayerThreads,
        grads_at: dict[int, Array],
        fused: dict[int, Array],
        records: list[dict[str, Any]],
        handed: list[list[Array]],
        summed: dict[int, list[Array]],
        input_grad: bool,
    ) -> bool:
        """Node i's backward call, if anything reached its output (else False), on the BLAS threads its size asks
        for (from_scratch/threads.py): its gradients checked and kept, its dL/dX sent to its inputs."""
        node = self.nodes[i]
        dA, dZ = grads_at.get(id(node.output)), fused.get(i)
        if dA is None and dZ is None:
            return False
        x = handed[i][:-1]
        threads.use(node.layer, x if node.several else x[0])
        dX = self._node_backward(i, dA, dZ, records[i], input_grad or self._needs_input_grad[i], handed[i])
        layer = node.layer
        records[i].update({key: v for key, v in layer.record().items() if v is not None})
        if id(layer) in self.shared:
            grads = [g.copy() for g in layer.grads]
            check_grads(layer, grads)
            records[i]["grads"] = grads
            summed[id(layer)] = self._add_call(summed.get(id(layer)), grads)
        else:
            check_grads(layer)
        if dX is None:
            return True
        records[i]["dX"] = dX
        for t, g in zip(node.inputs, dX if node.several else [dX]):
            self._fan_in(grads_at, id(t), g)
        return True

    @staticmethod
    def _fan_in(grads_at: dict[int, Array], key: int, g: Array) -> None:
        """dL/dT += g: a tensor that feeds several nodes receives the sum of their gradients (the multivariate chain
        rule). A new array each time: what a layer returned is never written into."""
        grads_at[key] = g if key not in grads_at else grads_at[key] + g

    @staticmethod
    def _add_call(total: list[Array] | None, grads: list[Array]) -> list[Array]:
        """A shared layer's parameter gradients: the sum over its calls (one set of weights used at each)."""
        return grads if total is None else [a + b for a, b in zip(total, grads)]

    def _gradients(self, summed: dict[int, list[Array]]) -> list[Array]:
        """dL/dparam per layer in get_weights() order (a shared layer's summed over its calls); under `watch` each
        checked to be a real array of the model's dtype."""
        out = []
        for layer in self.layers:
            grads = summed.get(id(layer), None) if id(layer) in self.shared else layer.grads
            if grads is None:
                grads = [np.zeros_like(p) for p in layer.params]
            if self.watch is None:
                out += list(grads)
            else:
                out += [
                    self.watch.result(layer, "backward", f"the gradient of {name}", g, self.dtype)
                    for name, g in zip(layer.param_names(), grads)
                ]
        return out

    def _node_backward(
        self,
        i: int,
        dA: Array | None,
        dZ: Array | None,
        record: dict[str, Array],
        input_grad: bool,
        handed: list[Array],
    ) -> Any:
        """Node i's backward: from dA = dL/d(its output), or on the fused path from the logits' dL/dZ (plus the
        activation's vector-Jacobian product of dA where its output also feeds other nodes); skips dL/dX where
        nothing needs it and the layer allows it; checks dL/dX's shape (one per input for a merge). Under `watch`
        also that dA, the inputs and the output are unchanged, and dL/dX's kind and dtype."""
        node = self.nodes[i]
        layer, watch, n = node.layer, self.watch, len(handed[-1])
        self._restore(i)
        if dA is not None:
            record["dA"] = dA
        if dZ is not None:
            if dA is not None:
                dZ = dZ + layer.activation.backward(layer.Z, layer.A, dA)
            argument, upstream = "dZ", dZ
            if watch is not None:
                watch.keep(dZ)
            dX = layer.backward_from_z(dZ, input_grad)
        else:
            argument, upstream = "dy", dA
            if watch is not None:
                watch.keep(dA)
            if not input_grad and layer.input_grad_optional:
                dX = layer.backward(dA, input_grad=False)
            else:
                dX = layer.backward(dA)
        if dX is not None or input_grad:
            self._check_input_grads(i, dX, n)
        if watch is None:
            return dX
        watch.calls += 1
        watch.unchanged(layer, "backward", argument, upstream)
        for k, a in enumerate(handed[:-1]):
            watch.unchanged(layer, "backward", f"x[{k}]" if node.several else "x", a)
        watch.unchanged(layer, "backward", "y", handed[-1])
        if dX is None:  # skipped: no input needed it (input_grad_optional), whether one input or several
            return None
        if node.several:
            return [watch.result(layer, "backward", f"dL/dx[{k}]", g, self.dtype) for k, g in enumerate(dX)]
        return watch.result(layer, "backward", "dL/dX", dX, self.dtype)

    def _check_input_grads(self, i: int, dX: Any, n: int) -> None:
        node = self.nodes[i]
        if not node.several:
            check_shape(node.layer, "backward() returned dL/dX", dX, (n, *self.node_input_shapes[i]))
            return
        if not isinstance(dX, (list, tuple)) or len(dX) != len(node.inputs):
            got = f"a list of {len(dX)}" if isinstance(dX, (list, tuple)) else a_or_an(type(dX).__name__)
            raise BadInputError(
                f"layer {node.layer.name!r}: backward() must return one dL/dx per input (a list of {len(node.inputs)} "
                f"arrays), returned {got}"
            )
        for k, (g, shape) in enumerate(zip(dX, self.node_input_shapes[i])):
            check_shape(node.layer, f"backward() returned dL/dx[{k}]", g, (n, *shape))

    def loss_and_gradients(
        self, x: Any, y: Any, loss: Any = "categorical_crossentropy", sample_weight: Array | None = None
    ) -> tuple[float, list[Array]]:
        """(L, [dL/dW1, dL/db1, ...]): the loss reduced as Keras does by default and its gradients, aligned one to
        one with `get_weights()`."""
        result = self.backward_pass(x, y, loss, sample_weight, input_grad=False, loss_weights=self.loss_weights)
        return result.loss, result.grads
