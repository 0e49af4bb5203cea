"""Render a `Report` as the evidence people read: a tabulate table and a one-line verdict, or JSON."""

from __future__ import annotations

import json

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
            [row.name, "x".join(map(str, row.shape)) or "scalar", _num(row.max_abs), _num(row.max_rel), _num(row.error),
             row.measure, _num(row.tol), "PASS" if row.passed else "FAIL"]
            for row in report.rows
        ],
        headers=["quantity", "shape", "max abs err", "max rel err", "error", "measure", "tolerance", "result"],
        disable_numparse=True,
    )
    used = sorted({row.measure for row in report.rows})
    legend = "\n".join(f"  {name:<10} {MEASURES[name]}" for name in used)
    return (
        f"{config}\n{pinned}\n\n{table}\n\n"
        f"max rel err = max|a - b| / max(max|a|, max|b|); 'error' is the measure the tolerance applies to:\n"
        f"{legend}\n\n{report.verdict()}"
        + ("" if report.passed or report.diagnosis is None else f"\ndiagnosis: {report.diagnosis.text}")
    )


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2)
