"""Softmax's shift invariance, and the step / sigmoid / ReLU comparison plot of the seed post (003).

Adding the same constant c to every logit leaves softmax unchanged, because the factor exp(c) cancels:

    exp(z_k + c) / sum_j exp(z_j + c) = exp(c) exp(z_k) / (exp(c) sum_j exp(z_j)) = softmax(z)_k

`from_scratch.activations.softmax` uses this itself: it subtracts each row's maximum, so no exponent is positive
and no logit overflows (the naive exp(z) / sum exp(z) gives inf / inf = nan once z exceeds ~709).

In floating point "unchanged" means: unchanged up to the rounding of z + c. Near 100 the spacing of doubles is
2^-46 ~ 1.4e-14, so z + 100 moves each logit by up to half that, and the outputs by a few 1e-15. Logits that
are multiples of 2^-10 survive + 100 exactly, and their outputs are then bit-identical.

The plot draws n inputs z ~ U(-10, 10), as in the post, and what step, sigmoid and ReLU make of them (bar charts,
one panel each); only ReLU's output is unbounded above.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from from_scratch.activations import relu, sigmoid, softmax, step
from from_scratch.errors import BadInputError

Array = np.ndarray


def naive_softmax(z: Array) -> Array:
    """exp(z) / sum exp(z) without the max shift: overflows for logits above ~709.  z (K,) -> (K,)."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(z)
        return e / e.sum()


def plot_activations(z: Array, path: str | Path) -> Path:
    """Bar charts of the inputs z (n,) and of step(z), sigmoid(z), relu(z), 2 x 2 panels, saved as a PNG at `path`.

    Uses matplotlib's object API (no pyplot, no global backend); raises BadInputError if matplotlib is missing.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise BadInputError(
            "the activation plot needs matplotlib, which is not installed; install it with "
            "pip install 'backprop-parity[plot]' (or pip install matplotlib), or pass plot_path=None"
        ) from None
    path = Path(path)
    fig = Figure(figsize=(9, 6), layout="constrained")
    panels = [("input z ~ U(-10, 10)", z), ("step(z)", step(z)), ("sigmoid(z)", sigmoid(z)), ("relu(z)", relu(z))]
    positions = np.arange(len(z))
    for ax, (title, values) in zip(fig.subplots(2, 2).ravel(), panels):
        ax.bar(positions, values)
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_title(title)
        ax.set_xticks(positions)
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise BadInputError(f"cannot write the plot to {str(path)!r}: {exc.strerror or exc}") from None
    return path


def run(
    out: Callable[[str], None] = print,
    plot_path: str | Path | None = "activations.png",
    n: int = 10,
    shift: float = 100.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Softmax of n logits z ~ U(-10, 10) and of z + shift, their largest difference, the exact case, the
    naive softmax's overflow; then the activation plot at `plot_path` (None: no plot)."""
    z = np.random.default_rng(seed).uniform(-10.0, 10.0, size=n)
    p = softmax(z[None, :])[0]
    p_shifted = softmax((z + shift)[None, :])[0]
    difference = float(np.abs(p - p_shifted).max())
    input_rounding = float(np.abs(((z + shift) - shift) - z).max())
    out(f"z ~ U(-10, 10), n = {n}, seed {seed}: {np.array2string(z, precision=3)}")
    out(f"softmax(z)       = {np.array2string(p, precision=6)} (sum {p.sum():.17g})")
    out(f"softmax(z + {shift:g}) = {np.array2string(p_shifted, precision=6)}")
    out(
        f"max |softmax(z) - softmax(z + {shift:g})| = {difference:.3g}; "
        f"rounding z + {shift:g} alone moved the logits by up to {input_rounding:.3g}"
    )

    z_exact = np.round(z * 1024) / 1024  # multiples of 2^-10: z + shift is exact
    exact_difference = float(np.abs(softmax(z_exact[None, :]) - softmax((z_exact + shift)[None, :])).max())
    out(f"with z rounded to multiples of 2^-10 (so z + {shift:g} is exact): max difference = {exact_difference:g}")

    big = z + 1000.0
    naive = naive_softmax(big)
    naive_overflows = bool(np.isnan(naive).any())
    out(
        f"z + 1000: naive exp(z) / sum exp(z) gives {np.array2string(naive[:3])}...; "
        f"from_scratch softmax gives {np.array2string(softmax(big[None, :])[0][:3], precision=6)}..."
    )

    saved = None
    if plot_path is not None:
        saved = str(plot_activations(z, plot_path))
        out(f"step, sigmoid and ReLU of the same inputs plotted to {saved}")
    return {
        "logits": z.tolist(),
        "softmax": p.tolist(),
        "softmax_shifted": p_shifted.tolist(),
        "shift": shift,
        "max_abs_difference": difference,
        "input_rounding": input_rounding,
        "exact_case_difference": exact_difference,
        "naive_overflows": naive_overflows,
        "plot_path": saved,
    }
