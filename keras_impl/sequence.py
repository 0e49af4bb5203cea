"""The Keras twins of from_scratch.sequence's layers: keras.layers.GlobalAveragePooling1D itself, and PositionEmbedding,
a small layer of this package (Keras's core has no position embedding). Registered in keras_impl.model.KERAS_LAYERS,
as from_scratch.sequence.ENCODER_LAYERS is in LAYERS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="backprop_parity")
class PositionEmbedding(keras.layers.Layer):
    """A learned position table added to a sequence, the twin of from_scratch.sequence.PositionEmbedding:

        outputs = inputs + expand_dims(embeddings, 0)        inputs (N, T, D), embeddings (T, D) -> (N, T, D)

    The table is initialised as Keras's Embedding ("uniform": U(-0.05, 0.05)). `sequence_length` None takes T from
    the input shape at build; given, it must equal it. Registered as serializable (package "backprop_parity"), so a
    saved .keras model holding it loads once keras_impl is imported, and compare.from_keras reads it.
    """

    def __init__(self, sequence_length: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if sequence_length is not None and (
            not isinstance(sequence_length, int) or isinstance(sequence_length, bool) or sequence_length <= 0
        ):
            raise ValueError(
                f"PositionEmbedding {self.name!r}: sequence_length must be a positive integer or None, got "
                f"{sequence_length!r}"
            )
        self.sequence_length = sequence_length

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 3:
            raise ValueError(
                f"PositionEmbedding {self.name!r} takes sequences (batch, timesteps, features), got {input_shape}"
            )
        steps, features = input_shape[1], input_shape[2]
        if steps is None or (self.sequence_length is not None and steps != self.sequence_length):
            raise ValueError(
                f"PositionEmbedding {self.name!r} has sequence_length {self.sequence_length} but is called on "
                f"sequences of {steps} steps"
            )
        self.embeddings = self.add_weight(
            shape=(steps, features), initializer="uniform", name="embeddings", trainable=True
        )

    def call(self, inputs: Any) -> Any:
        return inputs + ops.expand_dims(self.embeddings, 0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sequence_length": self.sequence_length}


#: The Keras twin of each entry in from_scratch.sequence.ENCODER_LAYERS.
KERAS_ENCODER_LAYERS: dict[str, Callable[[Any, str], keras.layers.Layer]] = {
    "global_average_pooling1d": lambda spec, dtype: keras.layers.GlobalAveragePooling1D(dtype=dtype),
    "position_embedding": lambda spec, dtype: PositionEmbedding(spec.options.get("sequence_length"), dtype=dtype),
}
