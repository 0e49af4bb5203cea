"""Render what the commands print: a `Report` as a tabulate table and a one-line verdict, or JSON; a training run
as a table per epoch; the training progress bar."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

from tabulate import tabulate

from compare.harness import MEASURES, Report


def _num(value: float) -> str:
    return "0" if value == 0 else f"{value:.2e}"


def render(report: Report) -> str:
    """The configuration, the table (one row per quantity), the measures' definitions and the verdict."""
    config = "  ".join(f"{k}={v}" for k, v in report.config.items())
    pinned = "  ".join(f"{k}={v}" for k, v in report.settings.items())
    table = tabulate(
        [
            [
                row.name,
                "x".join(map(str, row.shape)) or "scalar",
                _num(row.max_abs),
                _num(row.max_rel),
                _num(row.error),
                row.measure,
                _num(row.tol),
                "PASS" if row.passed else "FAIL",
            ]
            for row in report.rows
        ],
        headers=["quantity", "shape", "max abs err", "max rel err", "error", "measure", "tolerance", "result"],
        disable_numparse=True,
    )
    used = sorted({row.measure for row in report.rows})
    legend = "\n".join(f"  {name:<12} {MEASURES[name]}" for name in used)
    return (
        f"{config}\n{pinned}\n\n{table}\n\n"
        f"max rel err = max|a - b| / max(max|a|, max|b|); 'error' is the measure the tolerance applies to:\n"
        f"{legend}\n\n{report.verdict()}" + ("" if report.passed else _diagnosis_lines(report))
    )


def _diagnosis_lines(report: Report) -> str:
    """Under a failing table: where the sides first part and its pattern (`diagnosis:`), then what kind of
    difference the rows show (`kind:`, Diagnosis.reading)."""
    if report.diagnosis is None:
        return ""
    reading = report.diagnosis.reading
    return f"\ndiagnosis: {report.diagnosis.text}" + (f"\nkind: {reading}" if reading else "")


def to_json(report: Any) -> str:
    """Strict JSON (RFC 8259) of a report, or of any JSON-like value: a non-finite number (an error of inf when a
    side has NaN, a Taylor slope of inf for a function linear along its direction) becomes the string "inf",
    "-inf" or "nan", since bare Infinity and NaN tokens are not JSON."""
    value = report.to_dict() if hasattr(report, "to_dict") else report
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a NumPy scalar
        return _finite(value.item())
    return value


def render_epochs(report: Any) -> str:
    """A training run's configuration and one row per finished epoch (both sides' loss and accuracy, the parameter
    difference)."""
    rows = [
        [
            e["epoch"],
            f"{e['loss_scratch']:.6f}",
            f"{e['loss_keras']:.6f}",
            f"{e['acc_scratch']:.4f}",
            f"{e['acc_keras']:.4f}",
            f"{e['param_max_abs']:.2e}",
            f"{e['param_norm_rel']:.2e}",
        ]
        for e in report.epochs
    ]
    return "\n".join(
        [
            "  ".join(f"{k}={v}" for k, v in report.config.items()),
            tabulate(
                rows,
                headers=["epoch", "loss scratch", "loss keras", "acc scratch", "acc keras", "max |dW|", "norm-rel dW"],
                disable_numparse=True,
            ),
        ]
    )


def render_training(report: Any, plot: str | None = None) -> str:
    """A training-parity run: its epochs (`render_epochs`), where the plot went, the verdict and, when the sides
    parted, where."""
    lines = [render_epochs(report)]
    if plot:
        lines.append(f"plot written to {plot}")
    lines.append(report.verdict())
    if not report.passed and report.diagnosis:
        lines.append(f"diagnosis: {report.diagnosis}")
    return "\n".join(lines)


def progress_bar(quiet: bool) -> Callable[[int, int, int, int], None]:
    """The training progress callback: a bar per epoch on stderr, redrawn in place, on a terminal only (a log or
    a pipe gets the epoch table on stdout at the end, and stderr keeps to the one-line errors; nothing when `quiet`,
    e.g. with --json)."""

    def progress(epoch: int, batch: int, batches: int, epochs: int) -> None:
        if quiet or not sys.stderr.isatty():
            return
        done = int(20 * batch / batches)
        end = "\n" if batch == batches else ""
        print(
            f"\repoch {epoch + 1}/{epochs} [{'#' * done}{'.' * (20 - done)}] {batch}/{batches}",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return progress


def render_zoo_entry(entry: Any, report: Report, diagnosis: str, caught: bool) -> str:
    """One bug of the zoo: what it is, its evidence (the table for a gradient bug, the verdict for a training run),
    its diagnosis and whether it was located where expected."""
    evidence = render(report) if entry.kind == "gradient" else f"{report.verdict()}\ndiagnosis: {diagnosis}"
    located = "caught and located" if caught else "NOT located as expected"
    return f"== {entry.name}: {entry.description}\n{evidence}\n-> {located} ({entry.expect.strip()})\n"


def matrix_record(entry: Any, report: Report) -> dict[str, str]:
    """One configuration of `compare --all`, as the JSON and the table give it."""
    return {
        "arch": entry.label,
        "loss": entry.loss_label,
        "dtype": entry.dtype,
        "worst": f"{report.worst():.2e}",
        "status": "PASS" if report.passed else "FAIL",
    }


def render_matrix(records: list[dict[str, str]]) -> str:
    """The `compare --all` table and its one-line verdict."""
    rows = [[r["arch"], r["loss"], r["dtype"], r["worst"], r["status"]] for r in records]
    table = tabulate(rows, headers=["configuration", "loss", "dtype", "worst error", "result"], disable_numparse=True)
    passed = sum(r["status"] == "PASS" for r in records)
    return f"{table}\n\n{'PASS' if passed == len(records) else 'FAIL'}: {passed} of {len(records)} configurations agree"
