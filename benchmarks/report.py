"""Output: progress lines on stderr; table cells, and the report (machine lines and sections) as text tables and
as Markdown on stdout."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from benchmarks.timing import IDLE_THRESHOLD, Budget


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_cell(other: float) -> str:
    """The 'other load' cell: cores' worth of other processes' CPU, '!' when above the idle threshold."""
    if math.isnan(other):
        return "n/a"
    return f"{other:.2f}" + (" !" if other > IDLE_THRESHOLD else "")


def load_note(budget: Budget) -> str:
    """The note explaining the 'other load' column."""
    return (
        f"other load: cores' worth of CPU used by other processes during the measurement ('!' above "
        f"{IDLE_THRESHOLD}: disturbed, retried {budget.retries}x, still disturbed)"
    )


@dataclass
class Section:
    """One numbered part of the report: its tables and notes."""

    title: str
    tables: list[tuple[list[str], list[list[Any]]]]
    notes: list[str]


def render(sections: Sequence[Section], fmt: str) -> str:
    """The sections as text tables (fmt "simple") or Markdown (fmt "github")."""
    out = []
    for s in sections:
        out.append(("### " if fmt == "github" else "== ") + s.title)
        for head, rows in s.tables:
            out.append(tabulate(rows, headers=head, tablefmt=fmt, disable_numparse=True))
        if s.notes:
            out.append("\n".join(("- " if fmt == "github" else "  * ") + n for n in s.notes))
    return "\n\n".join(out)


def render_machine(machine: Sequence[tuple[str, str]], fmt: str) -> str:
    if fmt == "github":
        return "| machine | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in machine)
    return "\n".join(f"{k:>22}: {v}" for k, v in machine)


def print_report(
    machine: Sequence[tuple[str, str]], end: Sequence[tuple[str, str]], sections: Sequence[Section]
) -> None:
    """The sections and the closing lines as text (the opening machine lines were printed at the start), then
    everything again as Markdown, ready to paste into benchmarks/README.md."""
    print()
    print(render(sections, "simple"))
    print()
    print(render_machine(end, "simple"))
    print("\n\n---- Markdown (paste into benchmarks/README.md) ----\n")
    print(render_machine([*machine, *end], "github"))
    print()
    print(render(sections, "github"))
