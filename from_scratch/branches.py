"""The branch notation of the architecture string: a chain that merges branches starting from one tensor.

    "64-32-add(32-32 | id)-10"

is a residual block: the tensor after `32` feeds two branches, `32-32` and the identity `id`, and `add` adds what
they give; the chain goes on from the sum. A merge is its kind, its options after ':' as for any token, then its
branches in parentheses, separated by '|'; each branch is a chain of tokens (merges included, so merges nest) or
`id`. Every branch starts from the tensor before the merge, and the merge calls its layer on the branches' ends in
the order written.

    add, sub, mul, avg, max, min     Add, Subtract (two branches, the first minus the second), Multiply, Average,
                                     Maximum, Minimum: element-wise, the branches give one shape
    cat, cat:axis=1                  Concatenate (Keras's axis, counted with the batch axis; default -1, the last)
    dot, dot:axes=1                  Dot (two branches; axes as Keras's, default -1)

The long names (subtract, multiply, average, maximum, minimum, concatenate) are read too; the string form written
back uses the short ones. A Dense layer without an activation takes the hidden activation, except the last one in
reading order, which takes the output activation (as in a chain). Spaces around '(', '|' and ')' are allowed.

The result is a `GraphArchitecture` whose layers are named as Keras names them when the network is written with
its functional API in reading order, in a fresh session (dense, dense_1, ..., a merge after its branches' layers:
add, add_1, ...), with calls and layers in Keras's order (graph_arch.in_keras_order), so that both sides list their
weights alike; `str()` gives the string form back (each token written out, as `Architecture`'s `str()`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from from_scratch.arch import LayerSpec, _shape, layer_spec
from from_scratch.errors import BadInputError
from from_scratch.graph_arch import Call, GraphArchitecture, chain_call, in_keras_order, merge_output_shape

#: Each merge's token and its layer kind (MERGE_KINDS); the long names are read too.
MERGES = {
    "add": "add",
    "sub": "subtract",
    "mul": "multiply",
    "avg": "average",
    "max": "maximum",
    "min": "minimum",
    "cat": "concatenate",
    "dot": "dot",
}
_LONG_MERGES = {kind: kind for kind in MERGES.values()}
MERGE_TOKENS = {kind: token for token, kind in MERGES.items()}

#: The identity branch.
IDENTITY = "id"

#: A '-' inside a token: the exponent of a float (1e-05) or a negative option value (axis=-1).
_INSIDE = re.compile(r"(?:[0-9.][eE]|=)$")


@dataclass
class _Merge:
    """A merge as written: its head (kind and options) and its branches (lists of items; [IDENTITY] is `id`)."""

    head: str
    branches: list[list[str | _Merge]] = field(default_factory=list)


def parse_branches(text: str, hidden_activation: str = "relu", output_activation: str = "softmax") -> GraphArchitecture:
    """The graph that a string with merges describes (module docstring); malformed strings raise BadInputError in
    one line, naming what is wrong: unbalanced parentheses, an empty merge or branch, a merge of one branch, an
    unknown merge, shapes that do not agree at a merge (naming it and both shapes)."""
    items, end = _items(text, 0, 0)
    if end != len(text):  # a ')' or '|' at the top level
        raise _bad(text, f"{text[end]!r} at character {end + 1} has no '(' before it")
    if len(items) < 2 or not isinstance(items[0], str):
        raise _bad(text, "expected the input width (or HxWxC) then the layers, e.g. '64-32-add(32-32 | id)-10'")
    input_shape = _shape(items[0], text, "input width", (1, 3))
    tokens = list(_tokens(items[1:]))
    dense = [i for i, token in enumerate(tokens) if token.split(":")[0].isdecimal()]
    builder = _Builder(text, hidden_activation, output_activation, dense[-1] if dense else -1)
    end_tensor, shape, written = builder.chain(items[1:], "input_layer", tuple(input_shape))
    if len(shape) != 1:
        raise _bad(
            text, f"the output has shape {shape}; end with features (D,): add 'flatten' or 'gap' and a Dense layer"
        )
    if not dense and not any(spec.kind in ("conv2d", "simple_rnn", "lstm", "gru") for _, spec in builder.layers):
        raise _bad(text, "no Dense layer (a width) after the input width")
    try:
        graph = GraphArchitecture(
            (("input_layer", tuple(input_shape)),),
            tuple(builder.layers),
            tuple(builder.calls),
            (end_tensor,),
            text=f"{'x'.join(map(str, input_shape))}-{written}",
        )
    except BadInputError as exc:
        raise _bad(text, str(exc)) from None
    return in_keras_order(graph)


def _bad(text: str, message: str) -> BadInputError:
    return BadInputError(f"malformed architecture {text!r}: {message}")


def _items(text: str, i: int, depth: int) -> tuple[list[str | _Merge], int]:
    """The items of one chain from character i: tokens and merges separated by '-', up to the end of the text, or
    (inside a merge) up to the '|' or ')' that ends the branch. Returns the items and where it stopped."""
    items: list[str | _Merge] = []
    token: str | None = ""
    while i < len(text):
        c = text[i]
        if c == "-" and not (token and _INSIDE.search(token)):
            if token is not None:
                items.append(token)
            token = ""
        elif c == "(":
            head = (token or "").strip()
            merge = _Merge(head)
            i = _branches(text, i + 1, depth + 1, merge)
            items.append(merge)
            token = None  # the merge is the item: '-', '|', ')' or the end must follow
            continue
        elif c in "|)":  # the end of a branch (at the top level: an error the caller reports)
            return _closed(items, token), i
        elif token is None:
            if not c.isspace():
                raise _bad(text, f"{c!r} at character {i + 1} follows a merge's ')'; put '-' between layers")
        else:
            token += c
        i += 1
    if depth:
        raise _bad(text, "a '(' is not closed: every merge's branches end with ')'")
    return _closed(items, token), i


def _closed(items: list[str | _Merge], token: str | None) -> list[str | _Merge]:
    """The items with the last token added (None: the chain ended with a merge, already added)."""
    if token is not None:
        items.append(token)
    return [item.strip() if isinstance(item, str) else item for item in items]


def _branches(text: str, i: int, depth: int, merge: _Merge) -> int:
    """Read the branches of `merge` from character i (after its '('); returns the index after its ')'."""
    while True:
        items, i = _items(text, i, depth)
        if i >= len(text):
            raise _bad(text, f"the merge {merge.head or '(no name)'!r}: its '(' is not closed")
        merge.branches.append(items)
        if text[i] == ")":
            return i + 1
        i += 1  # past '|'


def _tokens(items: list[str | _Merge]) -> list[str]:
    """The layer tokens in reading order (merges' branches included, `id` and merge heads left out)."""
    out = []
    for item in items:
        if isinstance(item, _Merge):
            for branch in item.branches:
                out.extend(_tokens([] if branch == [IDENTITY] else branch))
        else:
            out.append(item)
    return out


class _Builder:
    """Walks the items in reading order: creates each layer (named by kind in creation order, a merge after its
    branches), records its call, and follows the shapes, refusing a layer or merge that cannot take them."""

    def __init__(self, text: str, hidden: str, output: str, last_dense: int) -> None:
        self.text, self.hidden, self.output, self.last_dense = text, hidden, output, last_dense
        self.position = 0  # layers read so far (tokens and merges, reading order): the messages' "layer N"
        self.dense_seen = 0
        self.token_index = 0
        self.counts: dict[str, int] = {}
        self.layers: list[tuple[str, LayerSpec]] = []
        self.calls: list[Call] = []

    def _name(self, kind: str) -> str:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        return kind if n == 0 else f"{kind}_{n}"

    def chain(self, items: list[str | _Merge], tensor: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...], str]:
        """Call the items one after the other from `tensor` of `shape`; returns the last tensor, its shape and the
        items written back (each token written out)."""
        written = []
        for item in items:
            self.position += 1
            if isinstance(item, _Merge):
                tensor, shape, text = self.merge(item, tensor, shape)
                written.append(text)
                continue
            if not item:
                raise _bad(self.text, f"layer {self.position} is empty: two '-' in a row, or '-' next to '(' or '|'")
            if item == IDENTITY:
                raise _bad(self.text, f"layer {self.position} 'id' (the identity) must be a whole branch: add(32 | id)")
            if item.split(":")[0] in MERGES or item.split(":")[0] in _LONG_MERGES:
                raise _bad(
                    self.text, f"layer {self.position} {item!r} is a merge: give its branches, {item}(... | ...)"
                )
            index = self.token_index
            self.token_index += 1
            activation = self.output if index == self.last_dense else self.hidden
            spec = layer_spec(item, self.text, self.position, activation, self.hidden)
            try:
                out_shape = spec.output_shape(shape, self.position)
            except BadInputError as exc:
                raise _bad(self.text, str(exc)) from None
            name = self._name(spec.kind)
            self.layers.append((name, spec))
            self.calls.append(chain_call(name, spec.kind, tensor))
            tensor, shape = name, out_shape
            written.append(spec.token())
        return tensor, shape, "-".join(written)

    def merge(self, merge: _Merge, tensor: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...], str]:
        """Call each branch from `tensor`, then the merge on their ends; returns the merge's output, its shape and
        the merge written back."""
        spec = self._merge_spec(merge)
        where = f"layer {self.position} ({merge.head or 'a merge without a name'})"
        if len(merge.branches) == 1:
            if merge.branches[0] == [""]:
                raise _bad(self.text, f"{where} has no branches: give two or more, e.g. {merge.head}(32-32 | id)")
            raise _bad(
                self.text,
                f"{where} has one branch: give two or more separated by '|' (the identity is 'id'), "
                f"e.g. {merge.head}(32-32 | id)",
            )
        ends, shapes, written = [], [], []
        for k, branch in enumerate(merge.branches, start=1):
            if branch == [""]:
                raise _bad(self.text, f"{where}: branch {k} is empty (write 'id' for the identity)")
            if branch == [IDENTITY]:
                ends.append(tensor)
                shapes.append(shape)
                written.append(IDENTITY)
                continue
            end, out, text = self.chain(branch, tensor, shape)
            ends.append(end)
            shapes.append(out)
            written.append(text)
        options = "".join(f":{key}={_axes_text(value)}" for key, value in spec.options.items())
        text = f"{MERGE_TOKENS[spec.kind]}{options}({' | '.join(written)})"
        try:
            out_shape = merge_output_shape(spec, shapes, f"{where[: where.index(' (')]} {text!r}")
        except BadInputError as exc:
            raise _bad(self.text, str(exc)) from None
        name = self._name(spec.kind)
        self.layers.append((name, spec))
        self.calls.append(Call(name, tuple(ends)))
        return name, out_shape, text

    def _merge_spec(self, merge: _Merge) -> LayerSpec:
        head, *parts = merge.head.split(":")
        where = f"layer {self.position}"
        kind = MERGES.get(head) or _LONG_MERGES.get(head)
        if kind is None:
            raise _bad(
                self.text,
                f"{where} {head!r} before '(' is not a merge; known: {', '.join(MERGES)} (a merge of branches: "
                "add(32-32 | id))",
            )
        options: dict[str, object] = {}
        key = {"concatenate": "axis", "dot": "axes"}.get(kind)
        for part in parts:
            name, eq, value = part.partition("=")
            if key is None or name != key or not eq:
                known = f"{key}=" if key else "none"
                raise _bad(self.text, f"{where} option {part!r} of {head!r} (unknown; known: {known})")
            if key in options:
                raise _bad(self.text, f"{where} gives {key}= twice in {merge.head!r}; give each option once")
            options[key] = _axes(value, self.text, where, key)
        if options.get(key) == -1:
            del options[key]  # Keras's default
        return LayerSpec(kind, options=options)


def _axes(value: str, text: str, where: str, key: str) -> int | tuple[int, int]:
    """axis=-1, axes=1 (an int, possibly negative), axes=1x2 (Dot's pair of positive axes)."""
    if key == "axes" and re.fullmatch(r"[0-9]+x[0-9]+", value):
        a, b = value.split("x")
        return (int(a), int(b))
    if re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    raise _bad(text, f"{where} {key}={value!r} is not an integer" + (" or a pair AxB" if key == "axes" else ""))


def _axes_text(value: int | tuple[int, int]) -> str:
    return str(value) if isinstance(value, int) else f"{value[0]}x{value[1]}"
