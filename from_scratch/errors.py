"""Exceptions raised on bad input.

Every error the project raises for a user's mistake is a `BadInputError` (a `ValueError`), so the command
line can turn it into one line on stderr and exit code 2, and the Python API can catch one type.
"""

from __future__ import annotations

from typing import Any


class BadInputError(ValueError):
    """A user-supplied value (shape, name, number, file) that the project refuses, with the reason."""


class UnknownNameError(BadInputError, KeyError):
    """An activation, loss, layer or optimizer name that no registry knows; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


def from_registry(kind: str, registry: dict[str, Any], name: str, **kwargs: Any) -> Any:
    """`registry[name](**kwargs)`, with an unknown name or an argument the entry does not take as BadInputError."""
    if name not in registry:
        raise unknown_name(kind, name, registry)
    try:
        return registry[name](**kwargs)
    except TypeError:
        raise BadInputError(f"{kind} {name!r} does not take {', '.join(sorted(kwargs))}") from None


def unknown_name(kind: str, name: object, known: object) -> UnknownNameError:
    """Build the error for `name` missing from a registry of `kind`s, listing the `known` names."""
    return UnknownNameError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")


def a_or_an(noun: str) -> str:
    """The noun with its indefinite article, for messages: "a Dense", "an int"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def check_real(
    owner: str,
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a float when it is a real number (an int, a float or a NumPy scalar, not a bool), not NaN or
    infinite, and within [low, high] (an end excluded when `*_open`); otherwise BadInputError naming the owner,
    the setting, the value and the range."""
    import numbers

    def bounds() -> str:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        return f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadInputError(f"{owner} {name} must be a real number in {bounds()}, got {value!r}")
    number = float(value)
    inside = number == number and abs(number) != float("inf")  # not NaN, not infinite
    if low is not None:
        inside = inside and (number > low if low_open else number >= low)
    if high is not None:
        inside = inside and (number < high if high_open else number <= high)
    if not inside:
        raise BadInputError(f"{owner} {name} must be in {bounds()}, got {value!r}")
    return number + 0.0  # -0.0 is 0.0 (its text form must read back)


def check_flag(owner: str, name: str, value: Any) -> bool:
    """`value` when it is True or False (or a NumPy bool): a string such as "no" is refused, not taken as true."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise BadInputError(f"{owner} {name} must be True or False, got {value!r}")
    return bool(value)


def check_seed(owner: str, seed: Any) -> int | None:
    """A random seed: None or an integer >= 0 (NumPy refuses negative seeds)."""
    return None if seed is None else check_count(owner, "seed", seed, low=0)


def check_count(owner: str, name: str, value: Any, low: int = 1) -> int:
    """`value` as an int when it is an integer (Python or NumPy, not a bool) >= low; BadInputError otherwise."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise BadInputError(f"{owner} {name} must be an integer >= {low}, got {value!r}")
    return int(value)
