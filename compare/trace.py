"""The trace the diagnosis reads: `Step`, one recorded quantity (Z, A, dL/dA, dL/dZ, a weight gradient, the loss) in
the order of computation, on both sides, with the harness's verdict on it; the names of the inference pass's row and
step; and how a backward step finds the one its gradient flows into (`_below`, `_producers`).

In a graph a node's place in the trace is its number in the order the nodes run (1-based; Keras's order), and its
name is its layer's, `name#k` for the k-th call of a shared layer: "layer 3 (dense#2) dL/dA". What a node's backward
sends back flows into its producers (the nodes its inputs come from, or a model input's dL/dX), not into the node
numbered one below; the harness gives every backward step its `producers` and `consumers`, and on the scratch side the
`parts` a summed quantity is the sum of.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

Array = np.ndarray

#: The row and the trace step of the inference pass (compare/harness.py): forward(x, training=False) on both sides,
#: from the weights after the training pass (a BatchNormalization then normalises with the moving statistics that
#: pass moved). It runs after the training pass, so it is read apart from that pass's forward.
INFERENCE_ROW = "output (inference, after the step)"
INFERENCE_STEP = "output in inference mode (training=False, after the step)"


#: The traced quantities whose first axis is the batch (a row of them is a sample); a weight gradient's is not.
BATCH_FIRST = ("Z", "A", "dL/dA", "dL/dZ", "dL/dX (input)")


@dataclass
class Step:
    """One quantity in the order of computation, on both sides, with the harness's verdict on it."""

    phase: str  # "forward" | "backward"
    layer: int  # 1-based; 0 for the loss and the input gradient
    layer_name: str
    quantity: str  # "Z", "A", "dL/dA", "dL/dZ", "dL/dkernel", ...
    ours: Array | None = None
    theirs: Array | None = None
    error: float = 0.0
    passed: bool = True
    context: dict[str, Any] = field(default_factory=dict)
    #: Where this node's backward sends its gradient: (layer, quantity) of each producer's step, one per input in
    #: order ((p, "dL/dA") for node p, (0, "dL/dX (input ...)") for a model input). None: a chain, layer - 1.
    producers: tuple[tuple[int, str], ...] | None = None
    #: The nodes (1-based) that read this node's output.
    consumers: tuple[int, ...] = ()
    #: The scratch side's addends of a summed quantity, named: at a fan-out's dL/dA what each consumer sent back,
    #: at a shared layer's parameter gradient each call's own. Empty when the quantity is not such a sum (or when
    #: an addend is not recorded: the loss's gradient at an output that also feeds other nodes).
    parts: tuple[tuple[str, Array], ...] = field(default=(), repr=False)

    @property
    def where(self) -> str:
        if self.layer == 0:
            return self.quantity
        return f"layer {self.layer} ({self.layer_name}) {self.quantity}"

    def judged(self, ours: Array, theirs: Array, error: float, passed: bool, context: dict[str, Any]) -> Step:
        """This step with both sides' values and the verdict filled in."""
        return replace(
            self, ours=np.asarray(ours), theirs=np.asarray(theirs), error=error, passed=passed, context=context
        )


def _producers(step: Step, steps: list[Step]) -> list[Step]:
    """The backward steps a node's gradient flows into, one per input in order: each producer node's dL/dA (the sum
    of everything its consumers sent back), or a model input's dL/dX. For a step without `producers` (a chain), the
    layer below's dL/dA, or dL/dX for the first layer. Producers whose dL/dA is not recorded are left out."""
    at = next((i for i, s in enumerate(steps) if s is step), None)
    if at is None:
        return []
    later = [s for s in steps[at + 1 :] if s.phase == "backward"]
    if step.producers is None:
        found = next(
            (s for s in later if (s.layer, s.quantity) in ((step.layer - 1, "dL/dA"), (0, "dL/dX (input)"))), None
        )
        return [found] if found is not None else []
    out = []
    for key in step.producers:
        found = next((s for s in later if (s.layer, s.quantity) == key), None)
        if found is not None:
            out.append(found)
    return out


def _below(step: Step, steps: list[Step]) -> Step | None:
    """The backward step a node's dL/dA flows into: its (first) producer's dL/dA, or the input's dL/dX; in a chain
    the layer below's dL/dA, or dL/dX for the first layer."""
    found = _producers(step, steps)
    return found[0] if found else None


def input_quantity(model: Any, k: int) -> str:
    """The trace's name of dL/dX for input k of `model`: "dL/dX (input)", or "dL/dX (input <name>)" when there are
    several."""
    return f"dL/dX (input {model.inputs[k].node.name})" if len(model.inputs) > 1 else "dL/dX (input)"


def node_links(model: Any) -> tuple[list[tuple[tuple[int, str], ...]], list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Per node of a from_scratch Model (in its order): the steps its backward sends gradients into (`producers`,
    one per input), the nodes that read its output (`consumers`, 1-based); and per model input the nodes that read
    it."""
    index = {id(node.output): i for i, node in enumerate(model.nodes)}
    inputs = {id(t): k for k, t in enumerate(model.inputs)}
    producers = [
        tuple(
            (index[id(t)] + 1, "dL/dA") if id(t) in index else (0, input_quantity(model, inputs[id(t)]))
            for t in node.inputs
        )
        for node in model.nodes
    ]
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(model.nodes):
        for t in node.inputs:
            readers = consumers.setdefault(id(t), [])
            if i + 1 not in readers:
                readers.append(i + 1)
    per_node = [tuple(consumers.get(id(node.output), ())) for node in model.nodes]
    per_input = [tuple(consumers.get(id(t), ())) for t in model.inputs]
    return producers, per_node, per_input


def scratch_parts(model: Any, step: Step, records: list[dict[str, Any]]) -> tuple[tuple[str, Array], ...]:
    """The scratch side's addends of `step`'s quantity, named (see Step.parts): at a dL/dA or dL/dX read by several
    nodes what each sent back (from records[c]["dX"]), at a shared layer's parameter gradient each call's own (from
    records[c]["grads"]). () for any other step, or when an addend is missing (a model output's loss gradient)."""
    if step.phase != "backward":
        return ()
    if step.quantity == "dL/dA" and step.layer:
        tensor = model.nodes[step.layer - 1].output
    elif step.quantity.startswith("dL/dX (input") and not step.layer:
        tensor = next((t for k, t in enumerate(model.inputs) if input_quantity(model, k) == step.quantity), None)
    else:
        return _call_parts(model, step, records)
    if tensor is None or any(t is tensor for t in model.outputs):
        return ()
    out = []
    for c in range(len(model.nodes)):
        node = model.nodes[c]
        sent = records[c].get("dX")
        for k, t in enumerate(node.inputs):
            if t is not tensor:
                continue
            if sent is None:
                return ()
            name = f"{node.name} (node {c + 1}" + (")" if node.inputs.count(t) == 1 else f", its input {k + 1})")
            out.append((name, sent[k] if node.several else sent))
    return tuple(out) if len(out) > 1 else ()


def _call_parts(model: Any, step: Step, records: list[dict[str, Any]]) -> tuple[tuple[str, Array], ...]:
    """Each call's own gradient of a shared layer's parameter (the step at the layer's first call)."""
    if not step.layer or not step.quantity.startswith("dL/d"):
        return ()
    layer = model.nodes[step.layer - 1].layer
    calls = model.calls.get(id(layer), [])
    names = list(layer.param_names()) if hasattr(layer, "param_names") else []
    label = step.quantity[len("dL/d") :]
    if len(calls) < 2 or label not in names:
        return ()
    at = {id(node): i for i, node in enumerate(model.nodes)}
    j = names.index(label)
    grads = [records[at[id(node)]].get("grads") for node in calls]
    if any(g is None for g in grads):
        return ()
    return tuple((f"{node.name} (node {at[id(node)] + 1})", g[j]) for node, g in zip(calls, grads))
