"""`Sequential`: a stack of layers with Keras's weight layout, its default loss reduction, and batch backprop.

    forward:   A_0 = X,  A_l = layer_l(A_{l-1})                      X (N, D) -> P (N, K)
    loss:      L = (1/N) sum_i w_i l_i(Y_i, P_i)
    backward:  dA_L = dL/dP, then dA_{l-1} = layer_l.backward(dA_l)  down to dX = dL/dX (N, D)

When the loss fuses with the output activation (softmax + categorical cross-entropy, as Keras does through the
logits a softmax output carries), the loss is computed from the output layer's logits Z and backprop starts at
dZ = (P - Y) / N, skipping the softmax Jacobian. Layers above it that return their input unchanged in this mode
(`Layer.passes_through`: an inactive Dropout) keep the logits attached, as Keras's tensors do.

A Sequential is the chain-shaped graph of from_scratch/graph.py: one Input, each layer called once on the output of
the layer before. The passes, the weights and training are the graph's (`Model`); this class adds the chain's
constructor and its description (`Architecture`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

import from_scratch.conv  # noqa: F401 - registers the convolutional layers in LAYERS
import from_scratch.merge  # noqa: F401 - registers the merge layers in LAYERS
import from_scratch.normalization  # noqa: F401 - registers the normalization layers in LAYERS
import from_scratch.pooling  # noqa: F401 - registers the pooling layers in LAYERS
import from_scratch.recurrent  # noqa: F401 - registers the sequence layers in LAYERS
import from_scratch.sequence  # noqa: F401 - registers GlobalAveragePooling1D and PositionEmbedding in LAYERS
from from_scratch.arch import Architecture, LayerSpec
from from_scratch.checks import as_array as _as_array
from from_scratch.checks import check_declarations as _check_declarations
from from_scratch.checks import check_fits_dtype as _check_fits_dtype
from from_scratch.checks import check_grads as _check_grads
from from_scratch.checks import check_numbers as _check_numbers
from from_scratch.checks import check_shape as _check_shape
from from_scratch.errors import BadInputError, a_or_an, unknown_name
from from_scratch.fitting import METRICS, History, accuracy
from from_scratch.graph import DTYPES, BackwardPass, Input, Model, call_layer
from from_scratch.layers import LAYERS, Layer, Shape, as_shape

Array = np.ndarray

__all__ = [
    "DTYPES",
    "METRICS",
    "BackwardPass",
    "History",
    "Sequential",
    "accuracy",
    "_as_array",
    "_check_declarations",
    "_check_fits_dtype",
    "_check_grads",
    "_check_numbers",
    "_check_shape",
]


class Sequential(Model):
    """A stack of layers built for inputs of `input_shape` (without the batch axis) in `dtype`, from `seed`.

    Any `from_scratch.Layer` goes in, shipped or user-defined; `input_dim=D` is the shorthand for
    input_shape=(D,). Weights follow Keras's order [W1, b1, W2, b2, ...] with kernels (in, out) and biases (out,).

    `watch`: None, or a `from_scratch.watch.Watch` that the passes (`backward_pass`, `forward`) report protocol
    breaches to: a layer that wrote into what it was handed, or returned another dtype (the comparison harness sets
    one for its own passes; a copy made by `astype` starts without).
    """

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
            if layer.several_inputs and not callable(getattr(layer, "self_call", None)):
                raise BadInputError(
                    f"layer {i} ({type(layer).__name__}) merges several tensors: a Sequential is a chain; build a "
                    "from_scratch.graph.Model for it"
                )
        x = Input(shape=shape)
        t = x
        for layer in layers:  # a layer of several inputs that can be called on one (self-attention) is so called
            t = layer.self_call(t) if layer.several_inputs else call_layer(layer, t)
        super().__init__(x, t, dtype=dtype, seed=seed, name="sequential")

    @classmethod
    def from_architecture(cls, arch: Architecture, dtype: str = "float64", seed: int | None = 0) -> Sequential:
        """Build the model that `arch` describes (the same description builds the Keras twin); a string is parsed
        as Architecture.parse reads it."""
        if isinstance(arch, str):
            arch = Architecture.parse(arch)
        if not isinstance(arch, Architecture):
            graph = type(arch).__name__ == "GraphArchitecture"  # merges of branches: not a chain
            raise BadInputError(
                f"from_architecture takes an Architecture or its text, got {a_or_an(type(arch).__name__)}"
                + (f" ({arch}): build a graph with from_scratch.Model.from_architecture" if graph else "")
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
        calls = copy.deepcopy([node.layer for node in self.nodes])  # one deep copy: a layer called twice stays shared
        model = Sequential(calls, dtype=dtype, seed=self.seed, input_shape=self.input_shape)
        self._carry_over(model)
        return model
