"""The string form of the layers keras.applications' networks add (from_scratch/arch.py's grammar, documented in
its module docstring): ZeroPadding2D `pad1`, `pad1x2`, `pad0x1x0x1`; DepthwiseConv2D `dw3[:options]`; the
Activation layer `act:NAME`; the ReLU layer `relu` / `relu6[:max=][:slope=][:t=]`; and the Transformer encoder's
PositionEmbedding `pos` / `posT` (GlobalAveragePooling1D, `gap1d`, has no option: it is among arch_reading._PLAIN);
and self-attention `mhaNxK[:v=Hv][:out=D][:drop=R][:nobias]` (MultiHeadAttention called on the sequence before it
as query and value).

Each kind has a writer (LayerSpec -> token) and the reader `application(token)` (token -> LayerSpec, or None for a
token of another layer); `Architecture.parse` and `str(arch)` go through them, so the two round-trip.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from from_scratch.arch import LayerSpec
from from_scratch.arch_reading import _dims, _Given, _pair
from from_scratch.errors import BadInputError

#: Image-only kinds outside the windowed ones (arch_reading._SPATIAL_PREFIX): they take (H, W, C) inputs only.
IMAGE_ONLY = frozenset({"global_average_pooling2d", "zero_padding2d", "depthwise_conv2d"})

#: Sequence-only kinds beside the recurrent ones and the Embedding: they take (T, D) inputs only.
SEQUENCE_ONLY = frozenset({"global_average_pooling1d", "position_embedding", "multi_head_attention"})

_PAD = re.compile(r"^pad([0-9]+)(?:x([0-9]+))?(?:x([0-9]+)x([0-9]+))?$")
_DEPTHWISE = re.compile(r"^dw([0-9]+(?:x[0-9]+)?)$")
_POSITION = re.compile(r"^pos([0-9]+)?$")
_ATTENTION = re.compile(r"^mha([0-9]+)x([0-9]+)$")


def _pad_token(spec: LayerSpec) -> str:
    (top, bottom), (left, right) = spec.options["padding"]
    if top == bottom and left == right:
        return f"pad{_dims((top, left))}"
    return f"pad{top}x{bottom}x{left}x{right}"


def _depthwise_token(spec: LayerSpec) -> str:
    o = spec.options
    out = [f"dw{_dims(o['kernel_size'])}"]
    if spec.activation != "linear":
        out.append(spec.activation)
    if o["padding"] != "valid":
        out.append(o["padding"])
    if o["strides"] != (1, 1):
        out.append(f"s={_dims(o['strides'])}")
    if o["dilation_rate"] != (1, 1):
        out.append(f"d={_dims(o['dilation_rate'])}")
    if o.get("depth_multiplier", 1) != 1:
        out.append(f"m={o['depth_multiplier']}")
    if o.get("use_bias", True) is False:
        out.append("nobias")
    return ":".join(out)


def _relu_token(spec: LayerSpec) -> str:
    o = spec.options
    out = ["relu6" if o.get("max_value") == 6 else "relu"]
    if o.get("max_value") not in (None, 6):
        out.append(f"max={float(o['max_value'])!r}")
    if o.get("negative_slope", 0.0) != 0:
        out.append(f"slope={float(o['negative_slope'])!r}")
    if o.get("threshold", 0.0) != 0:
        out.append(f"t={float(o['threshold'])!r}")
    return ":".join(out)


def _attention_token(spec: LayerSpec) -> str:
    o = spec.options
    out = [f"mha{o['num_heads']}x{o['key_dim']}"]
    if o.get("value_dim") is not None:
        out.append(f"v={o['value_dim']}")
    if o.get("output_shape") is not None:
        out.append(f"out={_dims(tuple(o['output_shape']))}")
    if o.get("dropout", 0.0):
        out.append(f"drop={float(o['dropout'])!r}")
    if o.get("use_bias", True) is False:
        out.append("nobias")
    return ":".join(out)


#: kind -> the writer of its token.
TOKENS: dict[str, Callable[[LayerSpec], str]] = {
    "zero_padding2d": _pad_token,
    "depthwise_conv2d": _depthwise_token,
    "activation": lambda spec: f"act:{spec.activation}",
    "re_lu": _relu_token,
    "position_embedding": lambda spec: f"pos{spec.options.get('sequence_length') or ''}",
    "multi_head_attention": _attention_token,
}


def _attention(head: str, parts: list[str], text: str, where: str, given: _Given) -> LayerSpec:
    """mhaNxK[:v=Hv][:out=D][:drop=R][:nobias]: self-attention, MultiHeadAttention(num_heads=N, key_dim=K) called
    on the sequence before it as query and value."""
    m = _ATTENTION.match(head)
    if m is None:
        raise BadInputError(
            f"malformed architecture {text!r}: {where} {head!r}; expected mhaNxK (self-attention with N heads of "
            "key_dim K, e.g. mha2x8)"
        )
    heads = _count(m.group(1), text, f"{where} num_heads")
    key_dim = _count(m.group(2), text, f"{where} key_dim")
    if heads <= 0 or key_dim <= 0:
        raise BadInputError(f"malformed architecture {text!r}: {where} num_heads and key_dim must be positive")
    options: dict[str, Any] = {
        "num_heads": heads,
        "key_dim": key_dim,
        "value_dim": None,
        "dropout": 0.0,
        "use_bias": True,
        "output_shape": None,
    }
    for part in parts:
        key, eq, value = part.partition("=")
        if key == "v" and eq:
            options["value_dim"] = _count(given.add("v=", part)[2:], text, f"{where} value_dim") or None
            if options["value_dim"] is None:
                raise BadInputError(f"malformed architecture {text!r}: {where} value_dim 0 is not positive")
        elif key == "out" and eq:
            options["output_shape"] = (_pair(given.add("out=", part)[4:], text, f"{where} output_shape")[0],)
        elif key == "drop" and eq:
            rate = _number(given.add("drop=", part), text, where)
            if not rate < 1:
                raise BadInputError(f"malformed architecture {text!r}: {where} drop={value} is not in [0, 1)")
            options["dropout"] = rate
        elif part == "nobias":
            options["use_bias"] = given.add("nobias", part) != "nobias"
        else:
            raise BadInputError(
                f"malformed architecture {text!r}: {where} option {part!r} (unknown; known: v=, out=, drop=, nobias)"
            )
    return LayerSpec("multi_head_attention", None, "linear", options)


def _count(token: str, text: str, what: str) -> int:
    if not token.isdecimal():
        raise BadInputError(f"malformed architecture {text!r}: {what} {token!r} is not a non-negative integer")
    return int(token)


def _number(part: str, text: str, where: str) -> float:
    key, _, value = part.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise BadInputError(f"malformed architecture {text!r}: {where} {key}={value!r} is not a number >= 0")
    return number


def application(token: str, text: str, position: int) -> LayerSpec | None:
    """padP[xQ[xRxS]], dwK[:options], act:NAME, relu[:options], relu6[:options], pos[T], mhaNxK[:options]; None
    for other tokens."""
    head, *parts = token.split(":")
    where = f"layer {position}"
    given = _Given(text, position, token)
    if head.startswith("mha") and head[3:4].isdigit():
        return _attention(head, parts, text, where, given)
    if head.startswith("pos"):
        m = _POSITION.match(head)
        if m is None or parts:
            raise BadInputError(
                f"malformed architecture {text!r}: {where} {token!r}; expected pos (PositionEmbedding, its length "
                "from the sequence) or posT (its length T stated, e.g. pos8), no options"
            )
        if m.group(1) is None:
            return LayerSpec("position_embedding", None, "linear", {})
        length = _count(m.group(1), text, f"{where} sequence_length")
        if length <= 0:
            raise BadInputError(
                f"malformed architecture {text!r}: {where} sequence_length {m.group(1)!r} is not a positive integer"
            )
        return LayerSpec("position_embedding", None, "linear", {"sequence_length": length})
    if head.startswith("pad") and head[3:4].isdigit():
        m = _PAD.match(head)
        if m is None or parts or (m.group(2) is None and m.group(3) is not None):
            raise BadInputError(
                f"malformed architecture {text!r}: {where} {token!r}; expected padP, padHxW or padTxBxLxR "
                "(ZeroPadding2D; non-negative integers, no options)"
            )
        sizes = [_count(g, text, f"{where} padding") for g in m.groups() if g is not None]
        padding = {1: lambda p: ((p[0],) * 2, (p[0],) * 2), 2: lambda p: ((p[0],) * 2, (p[1],) * 2)}.get(
            len(sizes), lambda p: ((p[0], p[1]), (p[2], p[3]))
        )(sizes)
        return LayerSpec("zero_padding2d", None, "linear", {"padding": padding})
    if head == "act":
        if len(parts) != 1 or not parts[0]:
            raise BadInputError(
                f"malformed architecture {text!r}: {where} {token!r}; expected act:NAME (an Activation layer, e.g. "
                "act:tanh)"
            )
        return LayerSpec("activation", None, given.add("an activation", parts[0]), {})
    if head in ("relu", "relu6"):
        options: dict[str, Any] = {"max_value": 6.0 if head == "relu6" else None}
        options.update(negative_slope=0.0, threshold=0.0)
        names = {"max": "max_value", "slope": "negative_slope", "t": "threshold"}
        for part in parts:
            key = part.partition("=")[0]
            if key not in names or (key == "max" and head == "relu6"):
                known = "slope=, t=" if head == "relu6" else "max=, slope=, t="
                raise BadInputError(
                    f"malformed architecture {text!r}: {where} option {part!r} (unknown; known: {known})"
                )
            options[names[key]] = _number(given.add(f"{key}=", part), text, where)
        return LayerSpec("re_lu", None, "linear", options)
    m = _DEPTHWISE.match(head)
    if m is None:
        if re.match(r"^dw[0-9]", head):
            raise BadInputError(f"malformed architecture {text!r}: {where} {head!r}; expected dwK or dwKxK (dw3)")
        return None
    options = {"kernel_size": _pair(m.group(1), text, f"{where} kernel size"), "padding": "valid"}
    activation = "linear"
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq and part in ("same", "valid"):
            options["padding"] = given.add("padding", part)
        elif part == "nobias":
            options["use_bias"] = given.add("nobias", part) != "nobias"
        elif not eq and part:
            activation = given.add("an activation", part)
        elif key == "s":
            options["strides"] = _pair(given.add("strides", part).partition("=")[2], text, f"{where} strides")
        elif key == "d":
            options["dilation_rate"] = _pair(given.add("dilation_rate", part)[2:], text, f"{where} dilation_rate")
        elif key == "m":
            options["depth_multiplier"] = _pair(given.add("m=", part)[2:], text, f"{where} depth_multiplier")[0]
        else:
            known = "an activation, same, valid, s=, d=, m=, nobias"
            raise BadInputError(f"malformed architecture {text!r}: {where} option {part!r} (unknown; known: {known})")
    options.setdefault("strides", (1, 1))
    options.setdefault("dilation_rate", (1, 1))
    options.setdefault("depth_multiplier", 1)
    if options["strides"][0] != options["strides"][1]:
        raise BadInputError(
            f"malformed architecture {text!r}: {where} strides {_dims(options['strides'])}: TensorFlow's depthwise "
            "convolution takes the same stride along height and width"
        )
    if options["strides"] != (1, 1) and options["dilation_rate"] != (1, 1):
        raise BadInputError(
            f"malformed architecture {text!r}: {where} strides {_dims(options['strides'])} with dilation_rate "
            f"{_dims(options['dilation_rate'])}: Keras's DepthwiseConv2D takes strides > 1 or dilation > 1, not both"
        )
    return LayerSpec("depthwise_conv2d", None, activation, options)
