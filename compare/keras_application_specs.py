"""from_keras's readers for the layers keras.applications' networks add: ZeroPadding2D, DepthwiseConv2D, Activation
and ReLU (each Keras layer -> the LayerSpec both sides are built from), merged into compare.keras_model.SPECS.

Every option the scratch layer does not implement is refused, naming the layer and the option; the values are
then checked again by the scratch layer itself when from_keras builds it (a depth_multiplier of 0, a negative
padding: BadInputError naming the layer and the option).
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from compare.keras_specs import _activation_name, _channels_last, _refuse_any
from from_scratch.arch import LayerSpec
from from_scratch.spatial import zero_padding


def _zero_padding2d_spec(layer: keras.layers.ZeroPadding2D) -> LayerSpec:
    _channels_last(layer)
    padding = zero_padding(tuple(tuple(p) for p in layer.padding), f"layer {layer.name!r} (ZeroPadding2D)")
    return LayerSpec("zero_padding2d", None, "linear", {"padding": padding})


def _depthwise_conv2d_spec(layer: keras.layers.DepthwiseConv2D) -> LayerSpec:
    _channels_last(layer)
    _refuse_any(
        layer,
        (
            "depthwise_regularizer",
            "bias_regularizer",
            "depthwise_constraint",
            "bias_constraint",
            "activity_regularizer",
        ),
    )
    options = {
        "kernel_size": tuple(int(k) for k in layer.kernel_size),
        "padding": layer.padding,
        "strides": tuple(int(k) for k in layer.strides),
        "dilation_rate": tuple(int(k) for k in layer.dilation_rate),
        "depth_multiplier": layer.depth_multiplier,
    }
    if not layer.use_bias:
        options["use_bias"] = False
    return LayerSpec("depthwise_conv2d", None, _activation_name(layer), options)


def _activation_spec(layer: keras.layers.Activation) -> LayerSpec:
    if layer.activation is keras.activations.relu6:  # tf.nn.relu6, as ReLU(max_value=6) computes it
        return LayerSpec("re_lu", None, "linear", {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0})
    return LayerSpec("activation", None, _activation_name(layer), {})


def _re_lu_spec(layer: keras.layers.ReLU) -> LayerSpec:
    def number(value: object) -> object:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    options = {
        "max_value": None if layer.max_value is None else number(layer.max_value),
        "negative_slope": number(layer.negative_slope),
        "threshold": number(layer.threshold),
    }
    return LayerSpec("re_lu", None, "linear", options)


#: The Keras layer classes read here (exact classes), merged into compare.keras_model.SPECS.
APPLICATION_SPECS: dict[type, Callable[[keras.layers.Layer], LayerSpec]] = {
    keras.layers.ZeroPadding2D: _zero_padding2d_spec,
    keras.layers.DepthwiseConv2D: _depthwise_conv2d_spec,
    keras.layers.Activation: _activation_spec,
    keras.layers.ReLU: _re_lu_spec,
}
