"""Printed outputs compared by what they mean, so a saved output is stale when its meaning changed and not when a
processor rounded differently.

NumPy's SIMD loops, OpenBLAS's kernels and TensorFlow's kernels each choose their code by processor, so two correct
runs on two machines differ in their last bits, and every figure that measures rounding (an error at the 1e-16 level,
a loss difference that is 0 on one processor and 4e-16 on another, a witness's relative error, "3.0 x epsilon")
differs in its printed digits. Everything else must match exactly.

The rule, for two texts (the saved and the fresh output of one notebook cell):
- Both have the same lines. Each line is split into numbers and the text between them; the text must be equal
  (runs of blanks and of table dashes count as one: a column may widen by one character when a figure does).
- A number is compared exactly unless its context makes it a rounding figure:
  - an error figure: in a table column whose header names an error ("max abs err", "error", "max |dW|", "norm-rel
    dW"), after a label naming one and standing directly before it ("error", "differ", "norm-rel", "relative",
    "rel", "max abs", |a - b|, "Keras - D- ="; "central differences" names the method, not an error), before
    its tolerance ("3.15e-10 (tolerance 1e-06)", "1.97e-16 <= 1e-12"), directly before its verdict ("1.66e-16  PASS"),
    in units of epsilon ("3.0 x epsilon"), or under a header line (without numbers) naming one; an integer is an
    error figure only in a table's error column, before its tolerance or in units of epsilon (elsewhere it is a
    count, an index, a shape or a percentage); a tolerance itself is a setting, compared exactly;
  - a witness value: a central difference, after "numerical", "central", "D-", "D0" or "D+";
  - a float64 printed in full (15 significant digits or more, as `repr` prints it).
- An error figure keeps its meaning when (in this order):
  - its tolerance is known (the row's tolerance column, or printed beside it): both are within it, or both are
    above it (a failing row's size) and the prints are adjacent (see below);
  - both are at most F64_TOL, the float64 tolerance: rounding on both sides;
  - it is a witness's error (its line names the witness: "numerical", "central", "coordinates", "D-") and both are
    at most GRADCHECK_TOL, the witness's tolerance (its rounding, eps |L| / h, moves with the kernels);
  - otherwise the prints are adjacent.
- A witness value keeps its meaning when the prints are adjacent; a full float64 print when the two are within
  FULL_PRINT_RTOL of each other.

"Adjacent prints": printed alike (the same number of digits, ADJACENT_DIGITS or more) and at most one unit apart in
the last digit. Two values
that differ by rounding print the same digits, or, when they straddle a half-unit boundary, adjacent ones: a bug
that is a factor 16 gives an error of exactly 1 - 1/16 = 0.9375, printed 9.38e-01 or 9.37e-01 as the last bit falls.

What this accepts that a reader could call a change: an error figure that is exactly 0 on one run (the lesson's
"max |dZ - formula| = 0.0") may read 1e-16 on another, and any error figure may move by one unit of its last digit.
Neither changes what the output says: both sides agree to rounding, and a figure that size apart is within the
print's own resolution.

SVG drawings (`drawing_differences`) are compared the same way: every character outside numbers equal, numbers
within SVG_COORDINATE_UNIT, and matplotlib's hashed element ids compared by the structure they name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from compare.tolerances import F64_TOL, GRADCHECK_TOL

#: A number as the notebooks print it: an integer, a decimal or a float in e-notation, signed or not, not part of a
#: name (dense_1, float64, X86_V4), of a shape (8x6, 3x3x1x8) or of a colour (#1a1a1a).
NUMBER = re.compile(r"(?<![\w.#])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")

#: A label naming an error: the figure after it measures how far two computations are apart. Also a header line's
#: (without numbers) naming the figures of the rows below it.
ERROR_LABEL = re.compile(r"err|differ|norm-rel|relative|\brel\b|max abs|\|[^|]*\s-\s[^|]*\|")

#: A difference written out just before its value: "Keras - D- = -4.1e-11". Only directly before the figure: a line
#: such as "(XW + b) - XW =" heads a matrix of values, not of errors.
DIFFERENCE_LABEL = re.compile(r"\w\s-\s\S+\s=\s*$")

#: A table column naming an error (the same words, and an absolute value such as "max |dW|").
ERROR_COLUMN = re.compile(r"err|differ|norm-rel|relative|\|[^|]+\|")

#: A label naming the numerical witness: central differences and their one-sided parts.
WITNESS_LABEL = re.compile(r"numerical|central|coord|\bD[-+0](?![\w])")

#: The method's name, not a measured error: "central differences" is how the witness computes.
METHOD = re.compile(r"central differences")

#: A label stands directly before its figure: it ends in a word, a bar, a colon or an equals sign and blanks
#: ("rel 1.1e-10", "max |a - b| = 0.0"), not in a comma inside a formula ("max(||a||, ||b||, 1e-3 ||M||)").
LABEL_END = re.compile(r"[\w|:=(]\s*$")

#: Adjacent prints are judged only between figures printed alike with this many significant digits or more: NumPy
#: prints 6.0 in an array as "6.", and one unit of that is not its precision.
ADJACENT_DIGITS = 2

#: A figure in units of float64 epsilon: "3.0 x epsilon".
EPSILON_UNIT = re.compile(r"^\s*x epsilon")
EPSILON = Decimal(2) ** -52

#: The text between a figure and its tolerance: "3.15e-10 (tolerance 1e-06)", "1.97e-16 <= 1e-12".
BEFORE_TOLERANCE = re.compile(r"\(tolerance\s*$|^\s*<=\s*$")

#: The text between a figure and its verdict: "1.66e-16  PASS".
BEFORE_VERDICT = re.compile(r"^\s+(PASS|FAIL)\b")

#: A table's rule line under its header: runs of dashes separated by blanks (compare/report.py, the training table).
RULE = re.compile(r"-+(?:\s+-+)+")

#: Fields of a table row: text separated by two blanks or more.
FIELD = re.compile(r"\S+(?: \S+)*")

#: The same number printed in full twice (Python's repr: 16-17 significant digits) from two processors. A float64 sum
#: of n terms in another order (another BLAS kernel, another SIMD width) moves by up to ~n ulps; the notebooks print
#: in full a batch loss (6 terms), softmax and loss values and gradient-descent end points (exact IEEE steps), and the
#: loss moved by one ulp between OpenBLAS's Sandybridge and SkylakeX kernels. 2^-44 is 256 ulps (5.7e-14 relative):
#: room for any such sum, and 13 times below the smallest difference the notebooks print in full to make a point
#: (the numerical and analytic gradient-descent end points, 7.6e-13 apart).
FULL_PRINT_RTOL = Decimal(2) ** -44

#: A float64 printed in full: 15 significant digits or more (float64 carries 15.95).
FULL_PRINT_DIGITS = 15

#: matplotlib's SVG backend writes coordinates with 6 decimals (`'%f'` with trailing zeros dropped): a coordinate
#: computed a few ulps differently can print one unit of the 6th decimal apart, never more. A change to a figure
#: moves its coordinates by far more (a label or box moved by 0.01 data units is a tenth of a point or more).
SVG_COORDINATE_UNIT = Decimal("1e-6")

#: matplotlib's element ids: a letter and ten hex digits of a hash of the element's content (clip rectangles,
#: glyphs), which holds full-precision floats.
SVG_ID = re.compile(r"\b([a-zA-Z])([0-9a-f]{10})\b")


@dataclass(frozen=True)
class Number:
    """One printed number: its text and where it stands in its line."""

    text: str
    start: int
    end: int

    @property
    def value(self) -> Decimal:
        return Decimal(self.text)

    @property
    def integer(self) -> bool:
        return not any(c in self.text for c in ".eE")

    @property
    def unit(self) -> Decimal:
        """One unit in the last printed digit."""
        return Decimal(1).scaleb(self.value.as_tuple().exponent)

    @property
    def printed_digits(self) -> int:
        """Digits printed after the leading zeros, trailing zeros included: what repr's precision shows."""
        mantissa = re.split(r"[eE]", self.text.lstrip("+-"))[0].replace(".", "").lstrip("0")
        return len(mantissa)


@dataclass(frozen=True)
class Figure:
    """How a number is compared: exactly, or as a rounding figure of one kind."""

    kind: str  # "exact", "error", "witness value", "full print"
    tolerance: Decimal | None = None
    witness: bool = False
    scale: Decimal = Decimal(1)  # EPSILON for a figure in units of epsilon


EXACT = Figure("exact")


def numbers(line: str) -> tuple[list[str], list[Number]]:
    """The texts between the numbers of `line` (one more than the numbers) and the numbers."""
    found = [Number(m.group(), m.start(), m.end()) for m in NUMBER.finditer(line)]
    texts, position = [], 0
    for number in found:
        texts.append(line[position : number.start])
        position = number.end
    texts.append(line[position:])
    return texts, found


def normalised(text: str) -> str:
    """Text as compared: a run of blanks is one blank, a run of three dashes or more (a table rule) is three dashes."""
    return re.sub(r"-{3,}", "---", re.sub(r"[ \t]+", " ", text))


def adjacent(a: Number, b: Number) -> bool:
    """The two prints, alike in format and with ADJACENT_DIGITS or more, differ by one unit in their last digit."""
    alike = a.unit == b.unit or (a.printed_digits == b.printed_digits and ("e" in a.text) == ("e" in b.text))
    if not alike or min(a.printed_digits, b.printed_digits) < ADJACENT_DIGITS:
        return False
    return abs(a.value - b.value) <= min(a.unit, b.unit)


def keeps_meaning(figure: Figure, saved: Number, fresh: Number) -> bool:
    """Whether `fresh` says what `saved` said, for a number of the given kind (see the module's docstring)."""
    if saved.text == fresh.text:
        return True
    if figure.kind == "full print":
        a, b = saved.value, fresh.value
        return abs(a - b) <= FULL_PRINT_RTOL * max(abs(a), abs(b))
    if figure.kind == "witness value":
        return adjacent(saved, fresh)
    if figure.kind != "error":
        return False
    a, b = abs(saved.value) * figure.scale, abs(fresh.value) * figure.scale
    if figure.tolerance is not None:
        limit = figure.tolerance
        if a <= limit and b <= limit:
            return True
        return a > limit and b > limit and adjacent(saved, fresh)
    if a <= Decimal(repr(F64_TOL)) and b <= Decimal(repr(F64_TOL)):
        return True
    if figure.witness and a <= Decimal(repr(GRADCHECK_TOL)) and b <= Decimal(repr(GRADCHECK_TOL)):
        return True
    return adjacent(saved, fresh)


def line_figures(line: str, heading: str = "") -> list[Figure]:
    """How each number of a line outside a table is compared; `heading` is the header line (without numbers) of
    the block the line stands in, which names what its rows' figures are."""
    texts, found = numbers(line)
    figures = []
    label_start = 0
    tolerance_next = False
    for i, number in enumerate(found):
        before, after = line[label_start : number.start], texts[i + 1]
        if line.count("|", 0, number.start) % 2 == 0:  # a number inside |...| is part of the label after it
            label_start = number.end
        is_tolerance, tolerance_next = tolerance_next, bool(BEFORE_TOLERANCE.search(after)) and i + 1 < len(found)
        if is_tolerance:  # the tolerance itself is a setting, compared exactly
            figures.append(EXACT)
            continue
        witness = bool(WITNESS_LABEL.search(heading + " " + line[: number.start]))
        tolerance = found[i + 1].value if tolerance_next else None
        in_epsilon = bool(EPSILON_UNIT.match(after))
        label = METHOD.sub("", before) if LABEL_END.search(before) else ""
        named = bool(
            ERROR_LABEL.search(label)
            or DIFFERENCE_LABEL.search(label)
            or ERROR_LABEL.search(METHOD.sub("", heading))
            or BEFORE_VERDICT.match(after)
        )
        if tolerance is not None or in_epsilon or (named and not number.integer):
            figures.append(Figure("error", tolerance, witness, EPSILON if in_epsilon else Decimal(1)))
        elif number.printed_digits >= FULL_PRINT_DIGITS:
            figures.append(Figure("full print"))
        elif not number.integer and WITNESS_LABEL.search(heading + " " + before):
            figures.append(Figure("witness value"))
        else:
            figures.append(EXACT)
    return figures


def table_figures(header: str, rule: str, line: str) -> list[Figure] | None:
    """How each number of a table row is compared, or None when `line` is not a row of the table whose header and
    rule line are given (its fields do not fall one per column)."""
    starts = [m.start() for m in re.finditer(r"-+", rule)]
    fields = list(FIELD.finditer(line))
    if len(fields) != len(starts):
        return None
    names = [header[s:e].strip() for s, e in zip(starts, starts[1:] + [len(header)])]
    tolerance = None
    if "tolerance" in names:
        values = numbers(fields[names.index("tolerance")].group())[1]
        tolerance = values[0].value if len(values) == 1 else None
    witness = bool(WITNESS_LABEL.search(line))
    figures = []
    for number in numbers(line)[1]:
        column = max(i for i, field in enumerate(fields) if field.start() <= number.start)
        if ERROR_COLUMN.search(names[column]):
            figures.append(Figure("error", tolerance, witness))
        elif number.printed_digits >= FULL_PRINT_DIGITS:
            figures.append(Figure("full print"))
        else:
            figures.append(EXACT)
    return figures


def figures_of(text: str) -> list[tuple[str, list[Figure]]]:
    """Every line of an output with how each of its numbers is compared (tables found by their rule line)."""
    lines = text.split("\n")
    result: list[tuple[str, list[Figure]]] = []
    table: tuple[str, str] | None = None
    heading = ""
    for index, line in enumerate(lines):
        if RULE.fullmatch(line.strip()) and index > 0:
            table, heading = (lines[index - 1], line), ""
            result.append((line, []))
            continue
        if table is not None:
            row = table_figures(*table, line)
            if row is not None:
                result.append((line, row))
                continue
            table = None
        if not line.strip():
            heading = ""
        elif not numbers(line)[1]:
            heading = line if (ERROR_LABEL.search(line) or WITNESS_LABEL.search(line)) else ""
        result.append((line, line_figures(line, heading)))
    return result


def differences(saved: str, fresh: str) -> list[str]:
    """Every place where `fresh` does not say what `saved` said, as 'line N: ...' (empty: the same meaning)."""
    old, new = saved.split("\n"), fresh.split("\n")
    if len(old) != len(new):
        return [f"{len(old)} lines saved, {len(new)} now"]
    problems = []
    for number, ((line, figures), after) in enumerate(zip(figures_of(saved), new), start=1):
        old_texts, old_numbers = numbers(line)
        new_texts, new_numbers = numbers(after)
        same_text = [normalised(t) for t in old_texts] == [normalised(t) for t in new_texts]
        if not same_text or len(old_numbers) != len(new_numbers):
            problems.append(f"line {number}: {line.strip()!r} is now {after.strip()!r}")
            continue
        for figure, a, b in zip(figures, old_numbers, new_numbers):
            if not keeps_meaning(figure, a, b):
                what = "" if figure.kind == "exact" else f" ({figure.kind})"
                problems.append(f"line {number}: {a.text} is now {b.text}{what} in {line.strip()!r}")
    return problems


def _ids_renamed(text: str) -> str:
    """matplotlib's hashed ids replaced by their order of first appearance: the references they carry are kept."""
    seen: dict[str, str] = {}

    def rename(match: re.Match) -> str:
        return seen.setdefault(match.group(), f"{match.group(1)}#{len(seen)}")

    return SVG_ID.sub(rename, text)


def drawing_differences(saved: str, fresh: str) -> list[str]:
    """Where two SVG files draw differently: text outside numbers (after the ids are renamed in order) must be equal,
    and numbers within SVG_COORDINATE_UNIT (at most the first five places are reported)."""
    old, new = _ids_renamed(saved), _ids_renamed(fresh)
    old_texts, old_numbers = numbers(old)
    new_texts, new_numbers = numbers(new)
    if old_texts != new_texts or len(old_numbers) != len(new_numbers):
        return ["the drawing's elements or attributes differ"]
    moved = [
        f"{a.text} is now {b.text}"
        for a, b in zip(old_numbers, new_numbers)
        if abs(a.value - b.value) > SVG_COORDINATE_UNIT
    ]
    return [f"{len(moved)} coordinates moved: " + ", ".join(moved[:5])] if moved else []
