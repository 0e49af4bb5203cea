"""The architecture description: the single source of truth from which both sides are built.

An `Architecture` is plain data (no NumPy, no Keras): the input width and a tuple of `LayerSpec`s.
`from_scratch.model.Sequential.from_architecture` and `keras_impl.model.build_model` each build their network
from the same object, so the two sides cannot drift apart in shape, activation or option.

The string form used on the command line is a dash-separated list: the input width, then one token per layer.
- A plain number is a Dense layer (`32`); `32:tanh` names its activation; `32:relu:l2=0.01` adds Keras L1L2
  regularisers (`l1=`, `l2=` on the kernel, `bias_l1=`, `bias_l2=` on the bias). Hidden Dense layers default
  to `hidden_activation` and the last one to `output_activation`.
- `dropout0.5` is a Dropout layer with rate 0.5; `bn` a BatchNormalization layer (Keras defaults).

    "64-32-16-10"  ==  "64-32:relu-16:relu-10:softmax"
    "64-32-bn-dropout0.2-10"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from from_scratch.errors import BadInputError


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its registry kind ("dense"), its width (Dense units) and its activation."""

    kind: str = "dense"
    units: int | None = None
    activation: str = "linear"
    options: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)

    def token(self) -> str:
        """The layer's token in the string form."""
        if self.kind == "dropout":
            return f"dropout{float(self.options['rate'])!r}"  # repr: the exact float, read back as the same float
        if self.kind == "batch_normalization":
            return "bn"
        options = "".join(f":{_SHORT[key]}={float(value)!r}" for key, value in self.options.items())
        return f"{self.units}:{self.activation}{options}"


@dataclass(frozen=True)
class Architecture:
    """input_dim and the layers in order; `output_dim` is the last Dense layer's width."""

    input_dim: int
    layers: tuple[LayerSpec, ...]

    @property
    def output_dim(self) -> int:
        dense = [spec for spec in self.layers if spec.kind == "dense"]
        return dense[-1].units if dense else self.input_dim

    @property
    def widths(self) -> list[int]:
        """The input width, then each Dense layer's width: the sizes of the activations and weights a run holds."""
        return [self.input_dim] + [spec.units for spec in self.layers if spec.units]

    def __str__(self) -> str:
        return "-".join([str(self.input_dim)] + [spec.token() for spec in self.layers])

    @classmethod
    def parse(cls, text: str, hidden_activation: str = "relu", output_activation: str = "softmax") -> Architecture:
        """Parse "64-32-16-10" (or "64-32:tanh-10:softmax"); malformed strings raise BadInputError."""
        tokens = _TOKENS.split(text.strip()) if isinstance(text, str) else []
        if len(tokens) < 2 or any(not t for t in tokens):
            raise BadInputError(
                f"malformed architecture {text!r}: expected the input width then one width per layer, "
                "separated by '-', e.g. '64-32-16-10'"
            )
        input_dim = _positive_int(tokens[0], text, "input width")
        dense_positions = [
            i for i, t in enumerate(tokens) if i > 0 and not t.startswith("dropout") and t not in ("bn", "batchnorm")
        ]
        if not dense_positions:
            raise BadInputError(f"malformed architecture {text!r}: no Dense layer (a width) after the input width")
        layers = []
        for position, token in enumerate(tokens[1:], start=1):
            if token.startswith("dropout"):
                layers.append(LayerSpec("dropout", options={"rate": _rate(token[len("dropout") :], text, position)}))
                continue
            if token in ("bn", "batchnorm"):
                layers.append(LayerSpec("batch_normalization"))
                continue
            units_text, *parts = token.split(":")
            units = _positive_int(units_text, text, f"layer {position} width")
            activation = output_activation if position == dense_positions[-1] else hidden_activation
            if parts and "=" not in parts[0]:
                activation = parts.pop(0)
            options = {}
            for part in parts:
                key, _, value = part.partition("=")
                if _LONG.get(key) in options:
                    raise BadInputError(f"malformed architecture {text!r}: layer {position} gives {key}= twice")
                if key not in _LONG:
                    raise BadInputError(
                        f"malformed architecture {text!r}: layer {position} option {part!r}; "
                        f"known: {', '.join(k + '=' for k in _LONG)}"
                    )
                options[_LONG[key]] = _non_negative(value, text, position, key)
            layers.append(LayerSpec("dense", units, activation, options))
        return cls(input_dim, tuple(layers))


#: '-' separates the tokens, except the minus of a float's exponent (1e-05, 5E-3), so any float Python reads is read.
_TOKENS = re.compile(r"(?<![0-9.][eE])-")

_LONG = {"l1": "kernel_l1", "l2": "kernel_l2", "bias_l1": "bias_l1", "bias_l2": "bias_l2"}
_SHORT = {v: k for k, v in _LONG.items()}


def _rate(token: str, text: str, position: int) -> float:
    try:
        rate = float(token)
    except ValueError:
        rate = -1.0
    if not 0 <= rate < 1:
        raise BadInputError(
            f"malformed architecture {text!r}: layer {position} dropout rate {token!r} is not in [0, 1)"
        )
    return rate


def _non_negative(token: str, text: str, position: int, key: str) -> float:
    if not token:
        raise BadInputError(
            f"malformed architecture {text!r}: layer {position} {key}= has no value "
            "('-' separates layers, and negative factors are refused)"
        )
    try:
        value = float(token)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise BadInputError(f"malformed architecture {text!r}: layer {position} {key}={token!r} is not a number >= 0")
    return value


def _positive_int(token: str, text: str, what: str) -> int:
    """A width: decimal digits (any script's, as int() reads them: full-width 64 is 64; the report shows what was
    read); a superscript or other digit-like character is refused, not crashed on."""
    if not token.isdecimal() or int(token) <= 0:
        raise BadInputError(f"malformed architecture {text!r}: {what} {token!r} is not a positive integer")
    return int(token)
