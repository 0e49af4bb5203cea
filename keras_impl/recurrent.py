"""The Keras twins of from_scratch.recurrent's sequence layers: spec, dtype -> keras layer.

Registered in keras_impl.model.KERAS_LAYERS, as from_scratch.recurrent.SEQUENCE_LAYERS is in LAYERS. On the
CPU, Keras's LSTM and GRU fall back from cuDNN to the generic TensorFlow loop over time
(keras/src/backend/tensorflow/rnn.py), the formulas from_scratch.recurrent reproduces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from keras_impl.activations import KERAS_ACTIVATIONS


def _simple_rnn(spec: Any, dtype: str) -> keras.layers.Layer:
    return keras.layers.SimpleRNN(
        spec.units,
        activation=KERAS_ACTIVATIONS[spec.activation],
        return_sequences=spec.options.get("return_sequences", False),
        dtype=dtype,
    )


def _lstm(spec: Any, dtype: str) -> keras.layers.Layer:
    return keras.layers.LSTM(spec.units, return_sequences=spec.options.get("return_sequences", False), dtype=dtype)


def _gru(spec: Any, dtype: str) -> keras.layers.Layer:
    return keras.layers.GRU(
        spec.units,
        reset_after=spec.options.get("reset_after", True),
        return_sequences=spec.options.get("return_sequences", False),
        dtype=dtype,
    )


def _embedding(spec: Any, dtype: str) -> keras.layers.Layer:
    return keras.layers.Embedding(spec.options["input_dim"], spec.units, dtype=dtype)


#: The Keras twin of each entry in from_scratch.recurrent.SEQUENCE_LAYERS.
KERAS_SEQUENCE_LAYERS: dict[str, Callable[[Any, str], keras.layers.Layer]] = {
    "simple_rnn": _simple_rnn,
    "lstm": _lstm,
    "gru": _gru,
    "embedding": _embedding,
}
