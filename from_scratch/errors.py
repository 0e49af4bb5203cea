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
