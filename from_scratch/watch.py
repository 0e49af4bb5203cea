"""The layer protocol, watched: what a layer is handed comes back unchanged, what it returns has the model's dtype.

A `Sequential` whose `watch` is a `Watch` (the comparison harness sets one for its own passes; training leaves it
None and pays nothing) keeps its own copy of every array it hands a layer:

    forward(x, training)   x must be unchanged when forward returns, and again after the layer's backward;
                           the output y must be unchanged after the layer's backward (it is the next layer's x)
    backward(dy)           dy must be unchanged when backward returns

and checks every result's kind and dtype: the output, dL/dX and each parameter gradient must be real arrays of the
model's dtype. A float32 output in a float64 model means the layer computes in float32; a complex output would lose
its imaginary part in the cast the next layer's arithmetic makes; integers and objects are not gradients. Each breach
is recorded (`Breach`, naming the layer, the argument and the call), never silently mended: the pass goes on with
the model's own copy of the argument and with the result cast to the model's dtype (the real part of a complex
result), so that the comparison still has every row to show, and the breach is a failing row of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from from_scratch.errors import BadInputError

Array = np.ndarray

#: What each watched argument is, as a breach names it.
ARGUMENTS = {
    "x": "its input x",
    "dy": "its input dy",
    "y": "its output y (the next layer's input)",
    "dZ": "its input dL/dZ",
}


def argument_text(argument: str) -> str:
    """What a watched argument is, in words: ARGUMENTS, and "x[k]" for input k of a layer of several inputs."""
    if argument.startswith("x[") and argument.endswith("]"):
        return f"its input {argument} (input {argument[2:-1]} of its list)"
    return ARGUMENTS[argument]


@dataclass
class Breach:
    """One way a layer broke the protocol in watched passes: `layer` (its name), `what` it did, the `calls` it did it
    in ("forward(training=True)", "forward(training=False)", "backward"), and a `detail` from the first time (the
    first entry changed, or what a cast loses)."""

    layer: str
    calls: list[str]
    what: str
    detail: str = ""

    @property
    def text(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"layer {self.layer!r} {self.what} during {' and '.join(self.calls)}{detail}"


@dataclass
class Watch:
    """The breaches seen over every watched pass (in order, one per layer and kind, with every call it happened in)
    and the number of layer calls watched. `dtypes=False` casts results to the model's dtype without reporting (a
    float64 copy of a float32 model, whose layers may compute in float32 by design); `arguments=False` keeps no copies
    and checks no argument (the witnesses' many passes, whose arguments the harness's own passes already checked)."""

    breaches: list[Breach] = field(default_factory=list)
    calls: int = 0
    dtypes: bool = True
    arguments: bool = True
    _kept: dict[int, tuple[Array, Array]] = field(default_factory=dict)
    _owners: dict[int, list[tuple[Any, str]]] = field(default_factory=dict)
    _past: list[tuple[Array, Array, list[tuple[Any, str]]]] = field(default_factory=list)

    @classmethod
    def casting(cls) -> Watch:
        """A watch that casts results to the model's dtype (a float32 result exactly, a complex one to its real part)
        and reports nothing, keeping no copies: for the witnesses' many passes on a float64 copy of a model, whose
        arguments the harness's own passes already checked and whose layers may compute in float32 by design."""
        return cls(dtypes=False, arguments=False)

    def report(self, layer: Any, call: str, what: str, detail: str = "") -> None:
        """Record that `layer` did `what` during `call`: a new breach, or one more call of a known one."""
        known = next((b for b in self.breaches if (b.layer, b.what) == (layer.name, what)), None)
        if known is None:
            self.breaches.append(Breach(layer.name, [call], what, detail))
        elif call not in known.calls:
            known.calls.append(call)

    def start(self) -> None:
        """A new pass: the arrays kept from the last one are set aside for `finish`, which checks that no layer wrote
        into them later (a layer that keeps its x, or the dy it returned as its dL/dX, and writes into it on its next
        call: harmless to one pass, but in training the x of the first layer is the user's data)."""
        self._past += [(a, copy, self._owners.get(key, [])) for key, (a, copy) in self._kept.items()]
        self._kept, self._owners = {}, {}

    def finish(self) -> None:
        """After the last watched pass: every array handed to a layer in any pass still holds what it held when that
        pass ended; a change is reported against the layer that was handed it (and the others that shared it)."""
        self.start()
        for a, copy, owners in self._past:
            if owners and not _same(a, copy):
                (layer, argument), others = owners[0], owners[1:]
                index = _first_change(a, copy)
                detail = f"{_entry(argument, index)} was {_value(copy[index])}, is {_value(a[index])}" if index else ""
                shared = ", ".join(f"{argument_text(arg)} of layer {other.name!r}" for other, arg in others)
                detail += f"; the same array was {shared}" if shared else ""
                self.report(
                    layer, "a later call", f"kept {argument_text(argument)} and wrote into it after returning", detail
                )
        self._past = []

    def keep(self, a: Array) -> Array:
        """Keep a copy of `a` (an array handed to a layer) until the pass ends; returns the copy (`a` itself when
        `arguments` is False: nothing kept, nothing checked)."""
        if not self.arguments:
            return a
        entry = self._kept.get(id(a))
        if entry is None or entry[0] is not a:
            entry = (a, a.copy())
            self._kept[id(a)] = entry
        return entry[1]

    def unchanged(self, layer: Any, call: str, argument: str, a: Array) -> Array:
        """Check that the kept array `a` (the layer's `argument`: "x", "dy", "y" or "dZ", see ARGUMENTS; "x[k]" for
        input k of a layer of several inputs) still holds
        what it held when kept; a change is reported once, naming the layer, the argument and the call, and the kept
        copy then follows the array, so that a later check blames no one else for it. Returns the value `a` held when
        it was handed over (the kept copy, or `a` itself when unchanged)."""
        entry = self._kept.get(id(a)) if self.arguments else None
        if entry is None or entry[0] is not a:
            return a
        owners = self._owners.setdefault(id(a), [])
        if not any(owner is layer and arg == argument for owner, arg in owners):
            owners.append((layer, argument))
        before = entry[1]
        if _same(a, before):
            return a
        index = _first_change(a, before)
        change = f"{_entry(argument, index)} was {_value(before[index])}, is {_value(a[index])}" if index else ""
        self.report(layer, call, f"wrote into {argument_text(argument)}", change)
        self._kept[id(a)] = (a, a.copy())
        return before

    def result(self, layer: Any, call: str, what: str, value: Any, dtype: np.dtype) -> Any:
        """`value` (a layer's output, dL/dX or a parameter gradient) as an array of `dtype`; another dtype or kind is
        reported (what it means for a float, what a cast would lose for a complex number) and cast, a value that is not
        numbers refused (BadInputError naming the layer). With `dtypes` False (a float64 copy of a float32 model, whose
        layers may compute in float32 by design) the cast is made and nothing reported."""
        if isinstance(value, np.ndarray) and type(value) is not np.ndarray:  # np.matrix: * and ** mean other things
            if self.dtypes:
                self.report(
                    layer,
                    call,
                    f"returned {what} as a {type(value).__module__}.{type(value).__name__}, not a plain ndarray",
                    "its arithmetic differs (np.matrix: * is a matrix product); return np.asarray(...)",
                )
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype == dtype:
            return value
        kind = value.dtype
        if kind.kind == "c":
            lost = float(np.abs(value.imag).max(initial=0.0))
            detail = (
                f"a {dtype} check; its imaginary part, up to {lost:.3g} in magnitude, is not compared"
                if lost
                else f"a {dtype} check; its imaginary part is 0"
            )
            cast = value.real
        elif kind.kind == "f":
            detail = f"a {dtype} check: the layer computes in {kind}, its twin in {dtype}"
            cast = value
        elif kind.kind in "iub":
            detail = f"a {dtype} check: {'booleans' if kind.kind == 'b' else 'integers'} are not real-valued results"
            cast = value
        else:
            detail = f"a {dtype} check: not an array of numbers"
            cast = value
        try:
            converted = np.asarray(cast).astype(dtype)
        except (TypeError, ValueError) as exc:
            raise BadInputError(
                f"layer {layer.name!r}: {call} returned {what} of dtype {kind}, not numbers ({exc})"
            ) from None
        if self.dtypes:
            self.report(layer, call, f"returned {what} of dtype {kind}", detail)
        return converted


def _same(a: Array, b: Array) -> bool:
    """Bit-level equality of two arrays of one shape and dtype (NaN equal to NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _first_change(a: Array, b: Array) -> tuple[int, ...]:
    if a.shape != b.shape:
        return ()
    with np.errstate(invalid="ignore"):
        differs = a != b
    if a.dtype.kind in "fc":
        differs &= ~(np.isnan(a) & np.isnan(b))
    where = np.argwhere(differs)
    return tuple(int(i) for i in where[0]) if len(where) else ()


def _entry(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, index))}]"


def _value(v: Any) -> str:
    return f"{v.item():.6g}" if hasattr(v, "item") and np.ndim(v) == 0 else repr(v)


@contextmanager
def watched(model: Any, watch: Watch) -> Iterator[Watch]:
    """`model.watch = watch` for the block, and None again after it (whatever the block raised)."""
    model.watch = watch
    try:
        yield watch
    finally:
        model.watch = None
