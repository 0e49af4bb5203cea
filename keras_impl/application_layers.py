"""The Keras twins of from_scratch/spatial.py's and from_scratch/activation_layers.py's layers: ZeroPadding2D,
DepthwiseConv2D, Activation and ReLU, Keras's own classes built from the same LayerSpec (spec, dtype -> layer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from keras_impl.activations import KERAS_ACTIVATIONS


def _depthwise_conv2d(spec: Any, dtype: str) -> keras.layers.Layer:
    o = spec.options
    return keras.layers.DepthwiseConv2D(
        o["kernel_size"],
        strides=o["strides"],
        padding=o["padding"],
        depth_multiplier=o.get("depth_multiplier", 1),
        dilation_rate=o["dilation_rate"],
        use_bias=o.get("use_bias", True),
        activation=KERAS_ACTIVATIONS[spec.activation],
        dtype=dtype,
    )


def _re_lu(spec: Any, dtype: str) -> keras.layers.Layer:
    o = spec.options
    return keras.layers.ReLU(
        max_value=o.get("max_value"),
        negative_slope=o.get("negative_slope", 0.0),
        threshold=o.get("threshold", 0.0),
        dtype=dtype,
    )


#: kind -> spec, dtype -> Keras layer; merged into keras_impl.model.KERAS_LAYERS.
KERAS_APPLICATION_LAYERS: dict[str, Callable[[Any, str], keras.layers.Layer]] = {
    "zero_padding2d": lambda spec, dtype: keras.layers.ZeroPadding2D(spec.options["padding"], dtype=dtype),
    "depthwise_conv2d": _depthwise_conv2d,
    "activation": lambda spec, dtype: keras.layers.Activation(KERAS_ACTIVATIONS[spec.activation], dtype=dtype),
    "re_lu": _re_lu,
}
