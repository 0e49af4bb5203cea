"""The architecture description: the single source of truth from which both sides are built.

An `Architecture` is plain data (no NumPy, no Keras): the input width and a tuple of `LayerSpec`s.
`from_scratch.model.Sequential.from_architecture` and `keras_impl.model.build_model` each build their network
from the same object, so the two sides cannot drift apart in shape, activation or option.

The string form used on the command line is a dash-separated list: the input width, then one token per layer.
A plain number is a Dense layer (`32`); `32:tanh` names its activation. Hidden Dense layers default to
`hidden_activation` and the last one to `output_activation`:

    "64-32-16-10"  ==  "64-32:relu-16:relu-10:softmax"
"""

from __future__ import annotations

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
        return f"{self.units}:{self.activation}"


@dataclass(frozen=True)
class Architecture:
    """input_dim and the layers in order; `output_dim` is the last Dense layer's width."""

    input_dim: int
    layers: tuple[LayerSpec, ...]

    @property
    def output_dim(self) -> int:
        dense = [spec for spec in self.layers if spec.kind == "dense"]
        return dense[-1].units if dense else self.input_dim

    def __str__(self) -> str:
        return "-".join([str(self.input_dim)] + [spec.token() for spec in self.layers])

    @classmethod
    def parse(cls, text: str, hidden_activation: str = "relu", output_activation: str = "softmax") -> Architecture:
        """Parse "64-32-16-10" (or "64-32:tanh-10:softmax"); malformed strings raise BadInputError."""
        tokens = text.strip().split("-") if isinstance(text, str) else []
        if len(tokens) < 2 or any(not t for t in tokens):
            raise BadInputError(
                f"malformed architecture {text!r}: expected the input width then one width per layer, "
                "separated by '-', e.g. '64-32-16-10'"
            )
        input_dim = _positive_int(tokens[0], text, "input width")
        layers = []
        for position, token in enumerate(tokens[1:], start=1):
            last = position == len(tokens) - 1
            units_text, _, activation = token.partition(":")
            units = _positive_int(units_text, text, f"layer {position} width")
            layers.append(LayerSpec("dense", units, activation or (output_activation if last else hidden_activation)))
        return cls(input_dim, tuple(layers))


def _positive_int(token: str, text: str, what: str) -> int:
    if not token.isdigit() or int(token) <= 0:
        raise BadInputError(f"malformed architecture {text!r}: {what} {token!r} is not a positive integer")
    return int(token)
