"""Reading a Keras layer into the LayerSpec both sides are built from (from_keras's per-layer readers).

`SPECS` maps each Keras layer class from_keras reads (the exact class: a subclass may compute something else) to
its reader: layer -> LayerSpec, refusing every option the scratch layer does not implement exactly with a
`BadInputError` naming the layer, the option and what is supported (`SUPPORTED`). The merge layers (Add, Subtract,
Multiply, Average, Maximum, Minimum, Concatenate, Dot) are read here too; how they are connected is read by
compare/keras_reading.py.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import keras

import keras_impl  # noqa: F401 (first: it pins TensorFlow's settings before TensorFlow loads)
from from_scratch.activations import ACTIVATIONS
from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError
from from_scratch.model import DTYPES
from keras_impl.activations import gelu_tanh
from keras_impl.sequence import PositionEmbedding

#: What from_keras accepts, quoted in every refusal.
SUPPORTED = (
    "supported: InputLayer; Dense (use_bias=True; activation one of "
    + ", ".join(name for name in ACTIVATIONS if name != "step").replace("gelu_tanh", "gelu_tanh (approximate=True)")
    + " at Keras's default arguments; kernel/bias regularizer L1, L2 or L1L2; no constraint or activity "
    "regularizer); Dropout (any rate, noise_shape=None); BatchNormalization (the last axis, center=True, "
    "scale=True, any momentum and epsilon); LayerNormalization (the last axis, center=True, scale=True, "
    "rms_scaling=False, any epsilon, on features or sequences); Conv2D (channels_last, groups=1, either use_bias, "
    "an activation as Dense's, no regularizer or constraint); DepthwiseConv2D (the same, any depth_multiplier); "
    "ZeroPadding2D (channels_last); Activation (an activation as Dense's, or relu6); ReLU (any max_value, "
    "negative_slope, threshold); MaxPooling2D, AveragePooling2D (channels_last); GlobalAveragePooling2D "
    "(keepdims=False); GlobalAveragePooling1D (channels_last, keepdims=False, no mask); backprop_parity's "
    "PositionEmbedding (keras_impl.sequence); Flatten; Reshape; SimpleRNN (an activation as Dense's), LSTM and GRU "
    "(tanh and sigmoid, GRU either reset_after) with use_bias=True, no dropout, regularizer, constraint, "
    "return_state, go_backwards, stateful or unroll, any return_sequences; Embedding (mask_zero=False, no "
    "regularizer or constraint); one dtype, float32 or float64, for every layer; the merge layers Add, Subtract, "
    "Multiply, Average, Maximum, Minimum, Concatenate (any axis) and Dot (normalize=False); MultiHeadAttention (any "
    "num_heads, key_dim, value_dim, dropout, use_bias, output_shape; attention over the steps, no gate, sliding "
    "window, flash attention, regularizer or constraint; called on query, value, key=, attention_mask=, "
    "use_causal_mask=, return_attention_scores= with the scores unused); a Sequential or functional model used as a "
    "layer (its layers are read in its place)"
)


#: Keras's activation functions (as `Dense(activation="name")` stores them) -> the scratch registry name.
KERAS_ACTIVATION_FUNCTIONS: dict[Any, str] = {
    keras.activations.linear: "linear",
    keras.activations.relu: "relu",
    keras.activations.sigmoid: "sigmoid",
    keras.activations.tanh: "tanh",
    keras.activations.softmax: "softmax",
    keras.activations.leaky_relu: "leaky_relu",
    keras.activations.elu: "elu",
    keras.activations.gelu: "gelu",  # approximate=False, Keras's default
    keras.activations.softplus: "softplus",
    gelu_tanh: "gelu_tanh",  # keras_impl's own gelu(approximate=True)
}


def _identical(table: dict[Any, str], obj: Any) -> str | None:
    """table[obj] by identity (activation and loss objects need not be hashable or comparable)."""
    return next((name for key, name in table.items() if key is obj), None)


def _where(layer: keras.layers.Layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _refuse(layer: keras.layers.Layer, problem: str) -> BadInputError:
    return BadInputError(f"{_where(layer)}: {problem}; {SUPPORTED}")


def _refuse_any(layer: keras.layers.Layer, options: tuple[str, ...]) -> None:
    """Refuse the first of `options` (a regularizer, a constraint) the layer sets, naming it and its class (an
    option a layer keeps only privately, MultiHeadAttention's `_kernel_regularizer`, is read there)."""
    for option in options:
        value = getattr(layer, option, None)
        value = getattr(layer, f"_{option}", None) if value is None else value
        if value is not None:
            raise _refuse(layer, f"{option}={type(value).__name__}")


def _layer_dtype(layer: keras.layers.Layer) -> str:
    """The dtype a layer computes and keeps its weights in; mixed or quantized policies are refused."""
    policy = layer.dtype_policy
    compute, variable = str(policy.compute_dtype), str(policy.variable_dtype)
    if getattr(policy, "quantization_mode", None) or compute != variable or compute not in DTYPES:
        raise _refuse(
            layer,
            f"dtype policy {policy.name!r} (computes in {compute}, keeps weights in {variable}): "
            f"only {' or '.join(DTYPES)} throughout",
        )
    return compute


def _activation_name(layer: keras.layers.Layer) -> str:
    """The scratch registry name of a Dense layer's activation function (Keras's own functions only, at their
    default arguments, and gelu with either `approximate`)."""
    fn = layer.activation
    if fn is None:
        return "linear"
    name = _identical(KERAS_ACTIVATION_FUNCTIONS, fn)
    if name is not None:
        return name
    if isinstance(fn, functools.partial) and _identical(KERAS_ACTIVATION_FUNCTIONS, fn.func) and not fn.args:
        name = _identical(KERAS_ACTIVATION_FUNCTIONS, fn.func)
        keywords = dict(fn.keywords)
        if fn.func is keras.activations.gelu and keywords.pop("approximate", False) is True:
            name = "gelu_tanh"
        defaults = {k: p.default for k, p in inspect.signature(fn.func).parameters.items()}
        for key, value in keywords.items():
            if key not in defaults or value != defaults[key]:
                shown = f"; only Keras's default {key}={defaults[key]!r}" if key in defaults else ""
                raise _refuse(layer, f"activation {name} with {key}={value!r}{shown}")
        return name
    if isinstance(fn, keras.layers.LeakyReLU):
        raise _refuse(
            layer,
            f"activation LeakyReLU(negative_slope={fn.negative_slope!r}) layer; only the function "
            f"leaky_relu with Keras's default negative_slope=0.2 (activation='leaky_relu')",
        )
    label = getattr(fn, "__name__", None) or type(fn).__name__
    raise _refuse(layer, f"activation {label!r}")


def _regularizer_options(layer: keras.layers.Layer, which: str) -> dict[str, float]:
    """kernel_l1/kernel_l2 (or bias_...) from an L1, L2 or L1L2 regularizer's config (its exact values)."""
    reg = getattr(layer, f"{which}_regularizer")
    if reg is None:
        return {}
    if type(reg) not in (keras.regularizers.L1, keras.regularizers.L2, keras.regularizers.L1L2):
        raise _refuse(layer, f"{which}_regularizer {type(reg).__name__}")
    config = reg.get_config()
    return {f"{which}_{k}": float(config[k]) for k in ("l1", "l2") if float(config.get(k, 0.0))}


def _dense_spec(layer: keras.layers.Dense) -> LayerSpec:
    if not layer.use_bias:
        raise _refuse(layer, "use_bias=False (the scratch Dense always has a bias)")
    _refuse_any(layer, ("kernel_constraint", "bias_constraint", "activity_regularizer"))
    if getattr(layer, "lora_enabled", False):
        raise _refuse(layer, f"LoRA (lora_rank={layer.lora_rank})")
    if getattr(layer, "quantization_mode", None):
        raise _refuse(layer, f"quantization {layer.quantization_mode!r}")
    options = {**_regularizer_options(layer, "kernel"), **_regularizer_options(layer, "bias")}
    return LayerSpec("dense", int(layer.units), _activation_name(layer), options)


def _dropout_spec(layer: keras.layers.Dropout) -> LayerSpec:
    if layer.noise_shape is not None:
        raise _refuse(layer, f"noise_shape={tuple(layer.noise_shape)!r} (a mask shared across an axis)")
    return LayerSpec("dropout", options={"rate": float(layer.rate)})


def _batch_normalization_spec(layer: keras.layers.BatchNormalization) -> LayerSpec:
    config = layer.get_config()
    axis = config["axis"]
    try:
        last = len(layer.input.shape) - 1  # the features (channels) axis counted from the front
    except (AttributeError, ValueError):  # a layer called more than once (shared, or by a comparison twin)
        ndim = getattr(getattr(layer, "input_spec", None), "ndim", None)
        last = ndim - 1 if ndim else 1
    if axis not in (-1, last, [-1], [last]):  # the last axis (features, or an image's channels), either way
        raise _refuse(layer, f"axis={axis!r}")
    for option, value in (("center", True), ("scale", True), ("synchronized", False), ("renorm", False)):
        if config.get(option, value) != value:
            raise _refuse(layer, f"{option}={config[option]!r}")
    _refuse_any(
        layer, ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint", "activity_regularizer")
    )
    return LayerSpec(
        "batch_normalization", options={"momentum": float(config["momentum"]), "epsilon": float(config["epsilon"])}
    )


def _layer_normalization_spec(layer: keras.layers.LayerNormalization) -> LayerSpec:
    """The last axis only (features, or each time step's features), with gamma and beta; any epsilon (Keras's
    default 1e-3 is left out of the options, as the scratch layer's spec leaves it)."""
    config = layer.get_config()
    axis = config["axis"]
    try:
        last = len(layer.input.shape) - 1
    except (AttributeError, ValueError):  # a layer called more than once (shared, or by a comparison twin)
        last = -1
    if axis not in (-1, last, [-1], [last]):
        raise _refuse(layer, f"axis={axis!r}")
    for option, value in (("center", True), ("scale", True), ("rms_scaling", False)):
        if config.get(option, value) != value:
            raise _refuse(layer, f"{option}={config[option]!r}")
    _refuse_any(
        layer, ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint", "activity_regularizer")
    )
    epsilon = float(config["epsilon"])
    return LayerSpec("layer_normalization", None, "linear", {} if epsilon == 1e-3 else {"epsilon": epsilon})


def _channels_last(layer: keras.layers.Layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _refuse(layer, f"data_format={layer.data_format!r}; only channels_last")


def _conv2d_spec(layer: keras.layers.Conv2D) -> LayerSpec:
    _channels_last(layer)
    if layer.groups != 1:
        raise _refuse(layer, f"groups={layer.groups}")
    _refuse_any(layer, ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint"))
    if getattr(layer, "activity_regularizer", None) is not None:
        raise _refuse(layer, "activity_regularizer")
    options = {
        "kernel_size": tuple(int(k) for k in layer.kernel_size),
        "padding": layer.padding,
        "strides": tuple(int(k) for k in layer.strides),
        "dilation_rate": tuple(int(k) for k in layer.dilation_rate),
        **({} if layer.use_bias else {"use_bias": False}),
    }
    return LayerSpec("conv2d", int(layer.filters), _activation_name(layer), options)


def _pooling_spec(kind: str) -> Any:
    def spec(layer: keras.layers.Layer) -> LayerSpec:
        _channels_last(layer)
        options = {
            "pool_size": tuple(int(k) for k in layer.pool_size),
            "padding": layer.padding,
            "strides": tuple(int(k) for k in layer.strides),
        }
        return LayerSpec(kind, None, "linear", options)

    return spec


def _global_average_pooling2d_spec(layer: keras.layers.GlobalAveragePooling2D) -> LayerSpec:
    _channels_last(layer)
    if layer.keepdims:
        raise _refuse(layer, "keepdims=True")
    return LayerSpec("global_average_pooling2d")


def _global_average_pooling1d_spec(layer: keras.layers.GlobalAveragePooling1D) -> LayerSpec:
    """The mean over the steps of (N, T, D) sequences: channels_last, keepdims=False (a mask is refused where the
    layer is called with one, by compare/keras_reading.py)."""
    _channels_last(layer)
    if layer.keepdims:
        raise _refuse(layer, "keepdims=True (the output (N, 1, D)); only keepdims=False")
    return LayerSpec("global_average_pooling1d")


def _position_embedding_spec(layer: PositionEmbedding) -> LayerSpec:
    """keras_impl's PositionEmbedding: its sequence_length, when it states one."""
    length = layer.sequence_length
    return LayerSpec("position_embedding", None, "linear", {} if length is None else {"sequence_length": int(length)})


def _flatten_spec(layer: keras.layers.Flatten) -> LayerSpec:
    _channels_last(layer)
    return LayerSpec("flatten")


def _reshape_spec(layer: keras.layers.Reshape) -> LayerSpec:
    target = tuple(layer.target_shape)
    if any(d is None or d < 0 for d in target):
        raise _refuse(layer, f"target_shape={target!r} with an unknown (-1) dimension; give every dimension")
    return LayerSpec("reshape", None, "linear", {"target_shape": tuple(int(d) for d in target)})


def _no_extras(layer: keras.layers.Layer, options: tuple[str, ...]) -> dict[str, Any]:
    """The layer's config, with each of `options` (regularizers, constraints) refused unless None."""
    config = layer.get_config()
    for option in options:
        if config.get(option) is not None:
            raise _refuse(layer, f"{option}={config[option]!r:.60}")
    return config


def _recurrent_spec(kind: str) -> Any:
    def spec(layer: keras.layers.Layer) -> LayerSpec:
        config = _no_extras(
            layer,
            (
                "kernel_regularizer",
                "recurrent_regularizer",
                "bias_regularizer",
                "activity_regularizer",
                "kernel_constraint",
                "recurrent_constraint",
                "bias_constraint",
            ),
        )
        for option, value in (
            ("use_bias", True),
            ("dropout", 0.0),
            ("recurrent_dropout", 0.0),
            ("return_state", False),
            ("go_backwards", False),
            ("stateful", False),
            ("unroll", False),
        ):
            if config.get(option, value) != value:
                raise _refuse(layer, f"{option}={config[option]!r}")
        activation = _activation_name(layer)
        if kind != "simple_rnn":
            recurrent = layer.recurrent_activation
            if activation != "tanh" or recurrent is not keras.activations.sigmoid:
                shown = getattr(recurrent, "__name__", type(recurrent).__name__)
                raise _refuse(layer, f"activation {activation!r} with recurrent_activation {shown!r}")
            activation = "linear"  # the spec's activation field is SimpleRNN's only
        options: dict[str, Any] = {"return_sequences": bool(config["return_sequences"])}
        if kind == "gru":
            options["reset_after"] = bool(config["reset_after"])
        return LayerSpec(kind, int(config["units"]), activation, options)

    return spec


def _embedding_spec(layer: keras.layers.Embedding) -> LayerSpec:
    config = _no_extras(layer, ("embeddings_regularizer", "embeddings_constraint", "activity_regularizer"))
    if config.get("mask_zero"):
        raise _refuse(layer, "mask_zero=True (a mask for the layers after it)")
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        raise _refuse(layer, "LoRA or quantization")
    return LayerSpec("embedding", int(config["output_dim"]), "linear", {"input_dim": int(config["input_dim"])})


def _multi_head_attention_spec(layer: keras.layers.MultiHeadAttention) -> LayerSpec:
    """MultiHeadAttention's options from its config; what the scratch layer does not compute is refused. How each
    call hands it its tensors (query, value, key=, attention_mask=) and flags is read from the call itself
    (compare/keras_reading.py)."""
    config = layer.get_config()
    axes = config.get("attention_axes")
    if axes is not None and tuple(axes) != (1,):  # Keras's default for (B, T, D) sequences is the axis 1 of T
        raise _refuse(layer, f"attention_axes={axes!r}; only attention over the steps (None, Keras's default)")
    for option, value in (("use_gate", False), ("sliding_window", None)):
        if config.get(option, value) != value:
            raise _refuse(layer, f"{option}={config[option]!r}; only {option}={value!r}")
    if getattr(layer, "_flash_attention", None):
        raise _refuse(layer, "flash_attention=True (keras.config.enable_flash_attention); only the default")
    _refuse_any(
        layer,
        ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint"),
    )
    out = config.get("output_shape")
    options = {
        "num_heads": int(config["num_heads"]),
        "key_dim": int(config["key_dim"]),
        "value_dim": int(config["value_dim"]) if config.get("value_dim") is not None else None,
        "dropout": float(config["dropout"]),
        "use_bias": bool(config["use_bias"]),
        "output_shape": None if not out else tuple(int(d) for d in (out if isinstance(out, (list, tuple)) else [out])),
    }
    return LayerSpec("multi_head_attention", None, "linear", options)


def _merge_spec(kind: str) -> Any:
    """Add, Subtract, Multiply, Average, Maximum, Minimum: no option beside the dtype."""

    def spec(layer: keras.layers.Layer) -> LayerSpec:
        return LayerSpec(kind)

    return spec


def _concatenate_spec(layer: keras.layers.Concatenate) -> LayerSpec:
    axis = layer.axis
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise _refuse(layer, f"axis={axis!r}; one axis (an int)")
    return LayerSpec("concatenate", options={"axis": int(axis)})


def _dot_spec(layer: keras.layers.Dot) -> LayerSpec:
    if layer.normalize:
        raise _refuse(layer, "normalize=True (the cosine of l2-normalized inputs); only normalize=False")
    axes = layer.axes
    return LayerSpec("dot", options={"axes": int(axes) if isinstance(axes, int) else tuple(int(a) for a in axes)})


#: The Keras layer classes from_keras reads (exact classes: a subclass may compute something else).
SPECS = {
    keras.layers.Dense: _dense_spec,
    keras.layers.Dropout: _dropout_spec,
    keras.layers.BatchNormalization: _batch_normalization_spec,
    keras.layers.LayerNormalization: _layer_normalization_spec,
    keras.layers.Conv2D: _conv2d_spec,
    keras.layers.MaxPooling2D: _pooling_spec("max_pooling2d"),
    keras.layers.AveragePooling2D: _pooling_spec("average_pooling2d"),
    keras.layers.GlobalAveragePooling2D: _global_average_pooling2d_spec,
    keras.layers.GlobalAveragePooling1D: _global_average_pooling1d_spec,
    PositionEmbedding: _position_embedding_spec,
    keras.layers.Flatten: _flatten_spec,
    keras.layers.Reshape: _reshape_spec,
    keras.layers.SimpleRNN: _recurrent_spec("simple_rnn"),
    keras.layers.LSTM: _recurrent_spec("lstm"),
    keras.layers.GRU: _recurrent_spec("gru"),
    keras.layers.Embedding: _embedding_spec,
    keras.layers.Add: _merge_spec("add"),
    keras.layers.Subtract: _merge_spec("subtract"),
    keras.layers.Multiply: _merge_spec("multiply"),
    keras.layers.Average: _merge_spec("average"),
    keras.layers.Maximum: _merge_spec("maximum"),
    keras.layers.Minimum: _merge_spec("minimum"),
    keras.layers.Concatenate: _concatenate_spec,
    keras.layers.Dot: _dot_spec,
    keras.layers.MultiHeadAttention: _multi_head_attention_spec,
}
