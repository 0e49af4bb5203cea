"""The training picture: both loss curves, the parameter difference over steps (log axis), the confusion matrix, and
for a CNN the first convolution's learned filters on both sides."""

from __future__ import annotations

from typing import Any

import numpy as np

from from_scratch.errors import BadInputError


def filter_tiles(kernel: np.ndarray) -> np.ndarray:
    """A conv kernel (kh, kw, C, F) as one row of F tiles (kh, kw), averaged over the input channels, separated by a
    NaN column (drawn blank)."""
    kh, kw, _, f = kernel.shape
    row = np.full((kh, f * (kw + 1) - 1), np.nan)
    for j in range(f):
        row[:, j * (kw + 1) : j * (kw + 1) + kw] = kernel[:, :, :, j].mean(axis=2)
    return np.vstack([row, np.full((1, row.shape[1]), np.nan)])


def training_figure(report: Any) -> Any:
    """The picture of a TrainingReport as a matplotlib Figure: loss curves, the parameter difference, the confusion
    matrix, and for a CNN the first layer's filters on both sides. Object API (no pyplot, no global backend), so a
    notebook keeps its inline plots; there the Figure shows itself once the inline backend is on (after importing
    pyplot, or `%matplotlib inline`)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise BadInputError("--plot needs matplotlib: pip install 'backprop-parity[plot]'") from None
    steps = [s["step"] for s in report.steps]
    filters = getattr(report, "filters", None)
    fig = Figure(figsize=(20 if filters else 15, 4.5))
    axes = fig.subplots(1, 4 if filters else 3)
    axes[0].plot(steps, [s["loss_scratch"] for s in report.steps], label="from scratch (NumPy)", lw=2.5, alpha=0.6)
    axes[0].plot(steps, [s["loss_keras"] for s in report.steps], "--", label="Keras", lw=1.2, color="black")
    axes[0].set(title="batch loss per step", xlabel="step", ylabel="loss")
    axes[0].legend()
    diffs = [max(s["param_max_abs"], 1e-18) for s in report.steps]
    axes[1].semilogy(steps, diffs, color="tab:red")
    axes[1].axhline(1e-18, color="grey", lw=0.5)
    axes[1].set(title="max |W_scratch - W_keras| (1e-18 = identical)", xlabel="step", ylabel="difference")
    if report.confusion:
        im = axes[2].imshow(report.confusion, cmap="Blues")
        for i, row in enumerate(report.confusion):
            for j, count in enumerate(row):
                axes[2].text(j, i, str(count), ha="center", va="center", fontsize=7)
        axes[2].set(title="confusion matrix (final scratch model)", xlabel="predicted", ylabel="true")
        fig.colorbar(im, ax=axes[2])
    else:
        axes[2].axis("off")
    if filters:
        tiles = np.vstack([filter_tiles(filters["scratch"]), filter_tiles(filters["keras"])])
        limit = float(np.abs(tiles[np.isfinite(tiles)]).max(initial=1e-12))
        axes[3].imshow(tiles, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[3].set(title="first-layer filters: scratch (top), Keras (bottom)", xticks=[], yticks=[])
    fig.suptitle(report.verdict(), fontsize=9)
    fig.tight_layout()
    return fig


def plot_training(report: Any, path: str) -> None:
    """Write the PNG of `training_figure(report)` to `path` (a file name or a binary file object)."""
    fig = training_figure(report)
    try:
        fig.savefig(path, dpi=90)
    except OSError as exc:
        raise BadInputError(f"cannot write the plot to {path!r}: {exc.strerror or exc}") from None
