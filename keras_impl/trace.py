"""The Keras side's intermediate quantities, layer by layer, through the tape.

`trace` runs the model's layer calls (its nodes, in the order Keras runs them: a Sequential's layers in order, a
functional model's by depth) one at a time so that every intermediate tensor can be watched: for a Dense layer
the pre-activation Z = X @ kernel + bias and the activation A = f(Z), exactly the three operations of
`keras.layers.Dense.call` (for a Conv2D, its convolution_op, the bias add and the activation); any other layer is
called as itself. One tape then gives dL/dA and dL/dZ for every layer. tests/test_zoo.py
(`test_keras_trace_is_the_models_own_computation`) checks that this pass
gives the same loss and gradients as calling the model, bit for bit.
Layer state that a training call changes (BatchNormalization's moving statistics) is restored afterwards.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_impl.attention import KERAS_LAYOUT_TOKEN_FIRST, attention_steps
from keras_impl.model import batch_tensors, total_loss


def pre_activation(layer: keras.layers.Layer, h: Any) -> Any:
    """Z of a Dense or Conv2D layer, by the operations of its own `call` before the activation."""
    if isinstance(layer, keras.layers.Conv2D):
        z = layer.convolution_op(h, layer.kernel)
        if layer.use_bias:
            z = ops.add(z, ops.reshape(layer.bias, (1,) * (layer.rank + 1) + (layer.filters,)))
        return z
    z = ops.matmul(h, layer.kernel)
    if layer.bias is not None:
        z = ops.add(z, layer.bias)
    return z


def graph_nodes(model: keras.Model) -> tuple[Any, list[Any]]:
    """(the functional graph behind `model`, its layer calls in the order Keras runs them): by depth from the
    outputs, deepest first (keras's Functional._run_through_graph). A keras.Sequential runs the functional graph it
    builds for itself."""
    graph = getattr(model, "_functional", None) or model
    if not hasattr(graph, "_nodes_by_depth"):
        raise ValueError(f"{model.name!r} is not a built Sequential or functional Keras model")
    nodes = graph._nodes_by_depth
    return graph, [node for depth in sorted(nodes, reverse=True) for node in nodes[depth] if not node.is_input]


def trace(
    model: keras.Model,
    x: Any,
    y: Any,
    loss: Any,
    loss_config: Any = None,
    sample_weight: np.ndarray | None = None,
    loss_weights: Any = None,
) -> list[dict[str, np.ndarray]]:
    """Per node (each call of a layer, in the order Keras runs them): {"Z", "A", "dA", "dZ"} for Dense and Conv2D
    layers, {"A", "dA"} for others (NumPy arrays).

    dA is dL/dA, the gradient reaching the node's output (summed over its consumers by the tape); dZ is dL/dZ. Runs
    in training mode. `loss`, `loss_config` and `loss_weights` as keras_impl.model.loss_and_gradients takes them.
    """
    dtype, loss_objs, xs, ys, sw = batch_tensors(model, x, y, loss, loss_config, sample_weight)
    graph, nodes = graph_nodes(model)
    state = [v.numpy() for v in model.non_trainable_weights]
    records: list[dict[str, Any]] = []
    with tf.GradientTape() as tape:
        values = {id(t): x_t for t, x_t in zip(graph.inputs, xs)}
        for node in nodes:
            layer = node.operation
            args, kwargs = node.arguments.fill_in(values)
            record: dict[str, Any] = {}
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
                z = pre_activation(layer, args[0])
                tape.watch(z)
                record["Z"] = z
                h = layer.activation(z) if layer.activation is not None else z
            elif isinstance(layer, keras.layers.MultiHeadAttention):
                h, steps = attention_steps(layer, *args, **{**kwargs, "training": True}, watch=tape.watch)
                record.update(steps)
            else:
                h = layer(*args, **{**kwargs, "training": True})
            if isinstance(h, (tuple, list)):  # (output, scores): the node's other outputs are read downstream too
                for t, v in zip(node.outputs[1:], h[1:]):
                    values[id(t)] = v
                h = h[0]
            tape.watch(h)
            record["A"] = h
            records.append(record)
            values[id(node.outputs[0])] = h
        outputs = [values[id(t)] for t in graph.outputs]
        value = total_loss(model, loss_objs, ys, outputs if len(outputs) > 1 else outputs[0], sw, loss_weights)
    keys = ("Z", "A", "Q", "K", "V", "S", "P", "C", "query", "value", "key")
    watched = [(i, key) for i, record in enumerate(records) for key in keys if key in record]
    grads = tape.gradient(value, [records[i][key] for i, key in watched])
    out = [{key: np.asarray(t) for key, t in record.items()} for record in records]
    for (i, key), g in zip(watched, grads):
        out[i]["d" + key] = np.zeros(out[i][key].shape, dtype=dtype) if g is None else np.asarray(g)
    for record in out:  # attention quantities Keras keeps (B, T, N, H): heads first, as the scratch side records
        for key in KERAS_LAYOUT_TOKEN_FIRST:
            for k in (key, "d" + key):
                if k in record:
                    record[k] = record[k].transpose(0, 2, 1, 3)
    for v, saved in zip(model.non_trainable_weights, state):
        v.assign(saved)
    return out
