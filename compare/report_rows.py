"""What a comparison reports: `Row`, one compared quantity (its errors, the measure it is judged by and its
tolerance), `Report`, the rows, the per-node trace and the diagnosis of one comparison, and `MEASURES`, what each
measure computes. compare/report.py renders them as tables."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from compare.diagnosis import Diagnosis, Step

Array = np.ndarray

MEASURES = {
    "norm-rel": "||a - b|| / max(||a||, ||b||)  (float64; gradients: max(||a||, ||b||, 1e-3 ||M||), M = summed terms; "
    "any quantity: also 64e12 min(||b' - b||, ||b' - a||), b' Keras with every input and weight one ulp off)",
    "vs float64": "max(||a - T|| / max(||b - T||, ||b' - T||, f), ||b - T|| / max(||a - T||, ||b' - T||, f)), T = "
    "Keras float64 on the same weights and batch, b' Keras float32 with every input and weight one ulp off, "
    "f = 1e-6 ||T||",
    "max-rel": "max|a - b| / max(max|a|, max|b|)",
    "exact": "max|a - b| (must be 0)",
    "taylor slope": "slope of log |f(x + h v) - f(x) - h <g, v>| against log h (2 when g is the gradient, 1 when not)",
    "protocol": "breaches of the layer protocol: an argument (x, dy) written into, a result of another dtype or kind "
    "(must be 0)",
}


@dataclass
class Row:
    """One compared quantity: scratch vs Keras (or analytic vs numerical), its errors and its verdict.

    `error` is the figure the tolerance applies to (its definition is `measure`); `max_abs` and `max_rel` are the
    plain scratch-vs-Keras differences, for reading."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    error: float
    measure: str
    tol: float

    @property
    def passed(self) -> bool:
        if self.measure == "taylor slope":  # inf: only rounding left at every step (linear along v), a pass
            return bool(self.error >= self.tol)
        return bool(np.isfinite(self.error) and self.error <= self.tol)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape), "status": "PASS" if self.passed else "FAIL"}


@dataclass
class Report:
    """All rows of one comparison, the configuration that produced them and the TensorFlow settings in force."""

    config: dict[str, Any]
    rows: list[Row]
    settings: dict[str, str] = field(default_factory=dict)
    trace: list[Step] = field(default_factory=list)
    diagnosis: Diagnosis | None = None

    def __post_init__(self) -> None:
        if self.diagnosis is not None:  # its reading needs every row, check_model's Taylor row appended later too
            self.diagnosis.attach(self.rows)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows) and all(step.passed for step in self.trace)

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if not row.passed]

    def worst(self, measure: str | None = None) -> float:
        """The largest `error` among the rows (of one measure, if given; the Taylor slope is not an error)."""
        values = [
            row.error
            for row in self.rows
            if (measure is None and row.measure != "taylor slope") or row.measure == measure
        ]
        return max(values, default=0.0)

    def verdict(self) -> str:
        n = len(self.rows)
        if self.passed:
            return f"PASS: all {n} quantities agree within tolerance" + (
                f" (and all {len(self.trace)} per-layer quantities)" if self.trace else ""
            )
        if not self.failures:
            return f"FAIL: the table agrees, but a per-layer quantity differs: {self.diagnosis.first.where}"
        breaches = [row.name for row in self.failures if row.measure == "protocol"]
        differ = [row.name for row in self.failures if row.measure != "protocol"]
        parts = [f"{'; '.join(breaches)}: the layer protocol forbids it"] if breaches else []
        if differ:
            parts.append(f"{len(differ)} of {n} quantities differ: {', '.join(differ)}")
        return "FAIL: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "settings": self.settings,
            "measures": {k: MEASURES[k] for k in sorted({row.measure for row in self.rows})},
            "rows": [row.to_dict() for row in self.rows],
            "passed": self.passed,
            "verdict": self.verdict(),
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis else None,
        }
