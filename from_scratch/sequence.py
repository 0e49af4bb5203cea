"""The layers a Transformer encoder needs beside its attention: GlobalAveragePooling1D, the mean over the time steps
of a sequence, and PositionEmbedding, a learned table of one vector per position added to the sequence. Dense,
Dropout and LayerNormalization already act on every time step of a sequence (N, T, D). Registered in
from_scratch.layers.LAYERS through ENCODER_LAYERS, as recurrent.py registers its layers."""

from __future__ import annotations

import numpy as np

from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError
from from_scratch.layers import LAYERS, Layer, Shape

Array = np.ndarray


def _sequence_shape(shape: Shape, layer: str) -> tuple[int, int]:
    """(T, D) of a sequence input shape (without the batch axis); any other rank refused, naming the layer."""
    if len(shape) != 2:
        raise BadInputError(f"layer {layer!r} takes sequences of shape (timesteps, features), got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


class GlobalAveragePooling1D(Layer):
    """The mean over the time steps, as keras.layers.GlobalAveragePooling1D (channels_last, keepdims=False):

        A[n, d] = (sum_t X[n, t, d]) / T        X (N, T, D) -> A (N, D)

    Keras computes ops.mean, TensorFlow's reduce_mean: the sum over the steps, then one division by the count T
    (rounded to the dtype), which is what this forward pass does (measured: reduce_mean equals reduce_sum / T bit
    for bit). The order of the sum is the library's own: NumPy adds the steps one after another, TensorFlow's Eigen
    kernel in vectorised partial sums that depend on the processor, so the two agree bit for bit on short
    sequences and to rounding (an ulp or so) on long ones.
    Backward: every step received the same share of the mean, dX[n, t, d] = dA[n, d] / T (TensorFlow's gradient of
    reduce_mean: dA broadcast over the steps, divided by T).
    No mask: a masked mean (Keras's `mask=` argument, or a mask an Embedding with mask_zero=True passes on) is refused.
    """

    kind = "global_average_pooling1d"
    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.kind

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> GlobalAveragePooling1D:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, None, "linear", {})

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """Sequences (T, D) -> features (D,)."""
        self.steps, features = _sequence_shape(input_shape, self.name)
        return (features,)

    def forward(self, x: Array, training: bool = False, mask: Array | None = None) -> Array:
        """A = sum_t X / T.  X (N, T, D) -> A (N, D)."""
        if mask is not None:
            raise BadInputError(
                f"layer {self.name!r} (GlobalAveragePooling1D): a mask is not supported; only the plain mean over "
                "every time step"
            )
        self.A = x.sum(axis=1) / x.dtype.type(x.shape[1])
        return self.A

    def backward(self, dA: Array) -> Array:
        """dX = dA / T broadcast over the steps.  dA (N, D) -> dX (N, T, D)."""
        share = dA / dA.dtype.type(self.steps)
        return np.broadcast_to(share[:, None, :], (len(dA), self.steps, dA.shape[1])).copy()

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """M_A = sum_t M_X / T: the mean's terms are the steps' terms."""
        return {"A": x_terms.sum(axis=1) / x_terms.shape[1]}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], self.backward(dA_terms), {}


class PositionEmbedding(Layer):
    """A learned position table added to a sequence: one trainable vector per time step, the same for every sample.

        A[n, t, d] = X[n, t, d] + P[t, d]        X (N, T, D), P (T, D) -> A (N, T, D)

    Keras's core has no position embedding; the choice here is the learned table (BERT's and GPT-2's; not the fixed
    sinusoids of the original Transformer), added in the graph as a layer of its own, so that it has a weight to
    compare and a gradient to check. Its Keras twin is keras_impl.sequence.PositionEmbedding, a small layer computing
    `inputs + ops.expand_dims(embeddings, 0)` (equal to this forward pass bit for bit: one rounding per element).
    P is drawn from U(-0.05, 0.05), Keras's Embedding default ("uniform"), from the model's generator.
    `sequence_length` None takes T from the input at build; given, it must equal the input's T.

    Backward: dP[t, d] = sum_n dA[n, t, d] (the table is shared by the batch, as a bias is), dX = dA.
    Weights in Keras's order: embeddings (T, D).
    """

    kind = "position_embedding"
    weight_names = ("embeddings",)
    trainable = (True,)

    def __init__(self, sequence_length: int | None = None, name: str | None = None) -> None:
        self.name = name or self.kind
        if sequence_length is not None and (
            not isinstance(sequence_length, (int, np.integer))
            or isinstance(sequence_length, bool)
            or sequence_length <= 0
        ):
            raise BadInputError(
                f"PositionEmbedding {self.name!r}: sequence_length must be a positive integer (or None: the "
                f"input's length), got {sequence_length!r}"
            )
        self.sequence_length = None if sequence_length is None else int(sequence_length)
        self.P: Array | None = None

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> PositionEmbedding:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        options = {} if self.sequence_length is None else {"sequence_length": self.sequence_length}
        return LayerSpec(self.kind, None, "linear", options)

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """P (T, D) from U(-0.05, 0.05), for sequences (T, D); the output is shaped as the input."""
        steps, features = _sequence_shape(input_shape, self.name)
        if self.sequence_length is not None and self.sequence_length != steps:
            raise BadInputError(
                f"layer {self.name!r} (PositionEmbedding) has sequence_length {self.sequence_length} but is called on "
                f"sequences of {steps} steps (input shape {tuple(input_shape)})"
            )
        self.P = rng.uniform(-0.05, 0.05, size=(steps, features)).astype(dtype)
        return (steps, features)

    @property
    def params(self) -> list[Array]:
        return [self.P]

    @property
    def grads(self) -> list[Array]:
        return [self.dP]

    def forward(self, x: Array, training: bool = False) -> Array:
        """A = X + P (P broadcast over the batch).  X (N, T, D) -> A (N, T, D)."""
        if self.P is None:
            raise BadInputError(f"layer {self.name!r} is not built: put it in a Sequential (or call build) first")
        self.A = x + self.P
        return self.A

    def backward(self, dA: Array) -> Array:
        """dP = sum_n dA (T, D), dX = dA.  dA (N, T, D) -> dX (N, T, D)."""
        self.dP = dA.sum(axis=0)
        return dA

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """M_A = M_X + |P|."""
        return {"A": x_terms + np.abs(self.P.astype(np.float64))}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        """[M_P = sum_n |dA|], |dX| = |dA|."""
        return [dA_terms.sum(axis=0)], dA_terms, {}


#: The encoder's layers beside attention, by kind; registered in from_scratch.layers.LAYERS.
ENCODER_LAYERS: dict[str, type[Layer]] = {
    "global_average_pooling1d": GlobalAveragePooling1D,
    "position_embedding": PositionEmbedding,
}

LAYERS.update(ENCODER_LAYERS)
