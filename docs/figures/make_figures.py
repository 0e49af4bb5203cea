"""Draw the computational graphs of docs/derivations.md: the dense layer, softmax + cross-entropy, batch normalisation,
one attention head.

    .venv/bin/python docs/figures/make_figures.py            # rewrites the SVG files next to this script
    .venv/bin/python docs/figures/make_figures.py OUT_DIR    # writes them into OUT_DIR instead

Every edge of a graph carries two labels: the forward value with its shape (black, above or left, the arrow pointing
forward) and the backward quantity that flows back along it (red, below or right, the arrow pointing back), so each
figure is its section's derivation read off the graph. The SVG output is deterministic (fixed hash salt, no date, text
drawn as paths with matplotlib's bundled font): tests/test_figures.py regenerates the files and compares them byte for
byte with the committed ones.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("svg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
FORWARD = "#1a1a1a"
BACKWARD = "#c0392b"
FUSED = "#1f6fb2"
FONT_SIZE = 11
OP_RADIUS = 0.42


class Graph:
    """One figure: variable boxes, operation circles, and edges carrying a forward and a backward label."""

    def __init__(self, width: float, height: float, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
        self.fig, self.ax = plt.subplots(figsize=(width, height))
        self.ax.set_xlim(*xlim)
        self.ax.set_ylim(*ylim)
        self.ax.set_aspect("equal")
        self.ax.axis("off")
        self.fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
        self.size: dict[tuple[float, float], tuple[float, float]] = {}

    def var(self, x: float, y: float, label: str, width: float = 1.1, height: float = 0.62) -> tuple[float, float]:
        """A variable (an input, a parameter, the loss): a rounded box."""
        box = FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor="#f4f4f4",
            edgecolor=FORWARD,
            linewidth=1.2,
        )
        self.ax.add_patch(box)
        self.ax.text(x, y, label, ha="center", va="center", fontsize=FONT_SIZE + 1, color=FORWARD)
        self.size[(x, y)] = (width / 2 + 0.05, height / 2 + 0.05)
        return (x, y)

    def op(self, x: float, y: float, label: str, radius: float = OP_RADIUS) -> tuple[float, float]:
        """An operation: a circle."""
        self.ax.add_patch(Circle((x, y), radius, facecolor="white", edgecolor=FORWARD, linewidth=1.2))
        self.ax.text(x, y, label, ha="center", va="center", fontsize=FONT_SIZE, color=FORWARD)
        self.size[(x, y)] = (radius + 0.05, radius + 0.05)
        return (x, y)

    def _clip(self, start: tuple[float, float], end: tuple[float, float]) -> tuple[tuple, tuple]:
        """The segment from start to end, shortened to leave both nodes' outlines."""
        (x0, y0), (x1, y1) = start, end
        dx, dy = x1 - x0, y1 - y0
        length = (dx * dx + dy * dy) ** 0.5
        ux, uy = dx / length, dy / length

        def inset(node: tuple[float, float]) -> float:
            half_w, half_h = self.size[node]
            return min(half_w / abs(ux) if ux else 1e9, half_h / abs(uy) if uy else 1e9)

        a, b = inset(start), inset(end)
        return (x0 + ux * a, y0 + uy * a), (x1 - ux * b, y1 - uy * b)

    def edge(
        self,
        start: tuple[float, float],
        end: tuple[float, float],
        forward: str,
        backward: str,
        side: float = 1.0,
        shift: float = 0.0,
    ) -> None:
        """A forward arrow start -> end labelled `forward`, and beside it a backward arrow end -> start labelled
        `backward`. `side` = 1 puts the forward label on the left of the direction of travel (above a rightward edge);
        `shift` moves both labels along the edge."""
        (x0, y0), (x1, y1) = self._clip(start, end)
        dx, dy = x1 - x0, y1 - y0
        length = (dx * dx + dy * dy) ** 0.5
        nx, ny = -dy / length * side, dx / length * side  # unit normal on the forward label's side
        gap = 0.09
        self.ax.add_patch(
            FancyArrowPatch(
                (x0 + nx * gap, y0 + ny * gap),
                (x1 + nx * gap, y1 + ny * gap),
                arrowstyle="-|>",
                mutation_scale=13,
                color=FORWARD,
                linewidth=1.3,
            )
        )
        self.ax.add_patch(
            FancyArrowPatch(
                (x1 - nx * gap, y1 - ny * gap),
                (x0 - nx * gap, y0 - ny * gap),
                arrowstyle="-|>",
                mutation_scale=13,
                color=BACKWARD,
                linewidth=1.3,
                linestyle=(0, (4, 2)),
            )
        )
        mx, my = (x0 + x1) / 2 + dx / length * shift, (y0 + y1) / 2 + dy / length * shift
        for sign, text, color in ((1, forward, FORWARD), (-1, backward, BACKWARD)):
            ox, oy = sign * nx, sign * ny  # the label sits on this side of the edge, anchored at its near corner
            ha = "left" if ox > 0.3 else "right" if ox < -0.3 else "center"
            va = "bottom" if oy > 0.3 else "top" if oy < -0.3 else "center"
            self.ax.text(mx + ox * 0.22, my + oy * 0.22, text, ha=ha, va=va, fontsize=FONT_SIZE, color=color)

    def note(self, x: float, y: float, text: str, color: str = FORWARD, **kwargs) -> None:
        kwargs.setdefault("fontsize", FONT_SIZE - 1)
        self.ax.text(x, y, text, color=color, **kwargs)

    def legend(self, x: float, y: float) -> None:
        self.note(x, y, "black, arrow forward: the value and its shape", ha="left", va="center")
        self.note(
            x, y - 0.38, "red, dashed, arrow back: what flows back, $dV = \\partial L/\\partial V$", BACKWARD, ha="left"
        )

    def save(self, path: Path) -> None:
        self.fig.savefig(path, format="svg", metadata={"Date": None})
        plt.close(self.fig)


def dense_layer() -> Graph:
    """Z = X W + 1 b^T, A = f(Z): section 2."""
    g = Graph(13.5, 4.3, (-0.8, 19.4), (-2.1, 3.6))
    x = g.var(0, 0, "$X$")
    w = g.var(4, 2.6, "$W$")
    b = g.var(9, 2.6, "$b$")
    matmul = g.op(4, 0, "$\\times$")
    add = g.op(9, 0, "$+$")
    act = g.op(14, 0, "$f$")
    loss = g.var(18.2, 0, "$\\cdots L$", width=1.5)
    g.edge(x, matmul, "$X\\ \\ (N, D)$", "$dX = dZ\\, W^{\\top}\\ \\ (N, D)$")
    g.edge(w, matmul, "$W\\ \\ (D, M)$", "$dW = X^{\\top} dZ\\ \\ (D, M)$")
    g.edge(matmul, add, "$XW\\ \\ (N, M)$", "$dZ\\ \\ (N, M)$")
    g.edge(b, add, "$b\\ \\ (M,)$", "$db = dZ^{\\top}\\mathbf{1}_N = \\sum_n dZ_{n,:}\\ \\ (M,)$", side=-1)
    g.edge(add, act, "$Z = XW + \\mathbf{1}_N b^{\\top}\\ \\ (N, M)$", "$dZ = dA \\odot f\\,'(Z)\\ \\ (N, M)$")
    g.edge(act, loss, "$A = f(Z)\\ \\ (N, M)$", "$dA\\ \\ (N, M)$")
    g.note(6.2, -1.15, "$b$: broadcast over the rows forward, summed over them backward", ha="center", va="center")
    g.legend(13.2, -1.15)
    return g


def softmax_cross_entropy() -> Graph:
    """P = softmax(Z), l_n = -sum_k Y_nk log P_nk, L = mean_n l_n: sections 5 to 7."""
    g = Graph(13.5, 4.6, (-0.8, 20.2), (-3.6, 3.2))
    z = g.var(0, 0, "$Z$")
    softmax = g.op(5.6, 0, "soft\nmax", radius=0.5)
    ce = g.op(10.6, 0, "CE")
    y = g.var(10.6, 2.4, "$Y$")
    mean = g.op(15.0, 0, "$\\frac{1}{N}\\Sigma$", radius=0.5)
    loss = g.var(19.0, 0, "$L$")
    g.edge(
        z,
        softmax,
        "$Z\\ \\ (N, K)$, the logits",
        "$dZ = P \\odot (dP - (dP \\odot P)\\,\\mathbf{1}_K \\mathbf{1}_K^{\\top})$",
    )
    g.edge(softmax, ce, "$P = \\mathrm{softmax}(Z)\\ \\ (N, K)$", "$dP = -\\frac{1}{N}\\,Y \\oslash P\\ \\ (N, K)$")
    g.edge(y, ce, "$Y\\ \\ (N, K)$, the targets", "none: data, not learned")
    g.edge(ce, mean, "$l_n = -\\sum_k Y_{nk} \\log P_{nk}\\ \\ (N,)$", "$dl = \\frac{1}{N}\\mathbf{1}_N\\ \\ (N,)$")
    g.edge(mean, loss, "$L$", "$dL = 1$")
    g.ax.add_patch(
        FancyArrowPatch(
            (10.3, -0.5),
            (0.2, -0.45),
            connectionstyle="arc3,rad=-0.22",
            arrowstyle="-|>",
            mutation_scale=13,
            color=FUSED,
            linewidth=1.6,
            linestyle=(0, (4, 2)),
        )
    )
    g.note(
        5.3,
        -2.55,
        "fused (section 7): $dZ = \\frac{1}{N}(P - Y)\\ \\ (N, K)$: no $dP$, no division by $P$",
        FUSED,
        ha="center",
        va="center",
        fontsize=FONT_SIZE,
    )
    g.note(13.0, -2.45, "black, arrow forward: the value and its shape", ha="left", va="center")
    g.note(13.0, -2.9, "red, dashed, arrow back: $dV = \\partial L/\\partial V$", BACKWARD, ha="left", va="center")
    g.note(-0.6, 2.9, "$\\oslash$: elementwise division", ha="left", va="center")
    return g


def batch_normalisation() -> Graph:
    """One feature column over the batch: mu, sigma^2, sigma_eps, x_hat, a = gamma x_hat + beta: section 13."""
    g = Graph(15.0, 7.0, (-0.8, 25.0), (-6.4, 5.2))
    x = g.var(0, 0, "$x$")
    mean = g.op(4.0, 3.2, "mean", radius=0.55)
    centre = g.op(8.0, 0, "$-$")
    var = g.op(10.5, -4.0, "mean\n$(\\cdot)^2$", radius=0.6)
    root = g.op(15.0, -4.0, "$\\sqrt{\\cdot + \\epsilon}$", radius=0.6)
    divide = g.op(15.0, 0, "$\\div$")
    gamma = g.var(18.5, 3.0, "$\\gamma$")
    times_gamma = g.op(18.5, 0, "$\\times$")
    beta = g.var(21.8, 3.0, "$\\beta$")
    shift = g.op(21.8, 0, "$+$")
    out = g.var(24.3, 0, "$a$", width=0.9)
    g.edge(x, mean, "$x\\ \\ (N,)$", "$\\frac{1}{N}\\, d\\mu\\ \\ (N,)$")
    g.edge(mean, centre, "$\\mu$", "$d\\mu = -\\sum_n d\\hat x_n / \\sigma_\\epsilon$")
    g.edge(x, centre, "$x\\ \\ (N,)$", "$d(x - \\mu)\\ \\ (N,)$")
    g.edge(centre, divide, "$x - \\mu\\ \\ (N,)$", "$d\\hat x / \\sigma_\\epsilon$")
    g.edge(centre, var, "$x - \\mu$", "$\\frac{2}{N}\\, d\\sigma^2\\, (x - \\mu)$", side=-1)
    g.edge(var, root, "$\\sigma^2$", "$d\\sigma^2 = d\\sigma_\\epsilon / (2 \\sigma_\\epsilon)$")
    g.edge(
        root,
        divide,
        "$\\sigma_\\epsilon$",
        "$d\\sigma_\\epsilon = -\\sum_n d\\hat x_n\\, (x_n - \\mu) / \\sigma_\\epsilon^2$",
    )
    g.edge(divide, times_gamma, "$\\hat x\\ \\ (N,)$", "$d\\hat x = \\gamma\\, da$")
    g.edge(gamma, times_gamma, "$\\gamma$", "$d\\gamma = \\sum_n da_n \\hat x_n$")
    g.edge(times_gamma, shift, "$\\gamma \\hat x$", "$da$")
    g.edge(beta, shift, "$\\beta$", "$d\\beta = \\sum_n da_n$")
    g.edge(shift, out, "$a$", "$da$")
    g.note(
        -0.6,
        -2.2,
        "$x$ and $x - \\mu$ feed two operations each:\nthe gradient of each is the sum of its two red arrows:\n"
        "$d(x - \\mu) = d\\hat x / \\sigma_\\epsilon + \\frac{2}{N}\\, d\\sigma^2\\, (x - \\mu)$\n"
        "$dx = d(x - \\mu) + \\frac{1}{N}\\, d\\mu$",
        ha="left",
        va="top",
        fontsize=FONT_SIZE,
        linespacing=1.6,
    )
    g.note(
        -0.6,
        4.8,
        "one feature column over the batch; $\\sigma_\\epsilon = \\sqrt{\\sigma^2 + \\epsilon}$",
        ha="left",
        va="center",
        fontsize=FONT_SIZE,
    )
    g.note(17.0, -5.5, "black, arrow forward: the value and its shape", ha="left", va="center")
    g.note(17.0, -5.95, "red, dashed, arrow back: $dV = \\partial L/\\partial V$", BACKWARD, ha="left", va="center")
    return g


def attention_head() -> Graph:
    """One head of one sample: Q, K, V projected, S = Q K^T / sqrt(d_k), P = masked softmax(S), C = P V: section 24."""
    g = Graph(15.0, 7.4, (-0.9, 25.2), (-6.6, 5.6))
    xq = g.var(0, 2.0, "$X_q$")
    xv = g.var(0, -3.0, "$X_v$")
    proj_q = g.op(5.0, 2.0, "$\\times W_q$\n$+\\,b_q$", radius=0.6)
    proj_k = g.op(11.0, -1.5, "$\\times W_k$\n$+\\,b_k$", radius=0.6)
    proj_v = g.op(5.0, -5.0, "$\\times W_v$\n$+\\,b_v$", radius=0.6)
    scores = g.op(11.0, 2.0, "$\\frac{Q K^{\\top}}{\\sqrt{d_k}}$", radius=0.6)
    softmax = g.op(16.2, 2.0, "masked\nsoftmax", radius=0.65)
    keep = g.var(16.2, 4.7, "keep", width=1.2)
    combine = g.op(20.2, -3.1, "$P\\,V$", radius=0.5)
    loss = g.var(24.0, -3.1, "$\\cdots L$", width=1.5)
    g.edge(xq, proj_q, "$X_q\\ \\ (T, D)$", "$dX_q = dQ\\, W_q^{\\top}$")
    g.edge(xv, proj_k, "$X_v\\ \\ (T_k, D_v)$", "$dK\\, W_k^{\\top}$", shift=-1.5)
    g.edge(xv, proj_v, "$X_v$", "$dV\\, W_v^{\\top}$", side=-1)
    g.edge(proj_q, scores, "$Q\\ \\ (T, d_k)$", "$dQ = dS\\, K / \\sqrt{d_k}\\ \\ (T, d_k)$")
    g.edge(proj_k, scores, "$K\\ \\ (T_k, d_k)$", "$dK = dS^{\\top} Q / \\sqrt{d_k}\\ \\ (T_k, d_k)$", side=-1)
    g.edge(scores, softmax, "$S\\ \\ (T, T_k)$", "$dS$")
    g.edge(keep, softmax, "keep $(T, T_k)$", "none: not learned")
    g.edge(softmax, combine, "$P\\ \\ (T, T_k)$", "$dP = dC\\, V^{\\top}\\ \\ (T, T_k)$")
    g.edge(proj_v, combine, "$V\\ \\ (T_k, d_v)$", "$dV = P^{\\top} dC\\ \\ (T_k, d_v)$", side=-1)
    g.edge(combine, loss, "$C\\ \\ (T, d_v)$", "$dC\\ \\ (T, d_v)$")
    g.note(
        -0.6,
        5.2,
        "one head of one sample; the weights' gradients: $dW_q = X_q^{\\top} dQ$, $db_q = dQ^{\\top}\\mathbf{1}_T$, "
        "and alike for $K$ and $V$",
        ha="left",
        va="center",
        fontsize=FONT_SIZE,
    )
    g.note(
        6.4,
        -5.95,
        "$dS = \\mathrm{keep} \\odot P \\odot (dP - (P \\odot dP)\\,\\mathbf{1}\\mathbf{1}^{\\top})\\ \\ (T, T_k)$\n"
        "$X_v$ feeds two projections: $dX_v = dK\\, W_k^{\\top} + dV\\, W_v^{\\top}$",
        BACKWARD,
        ha="left",
        va="center",
        fontsize=FONT_SIZE,
        linespacing=1.7,
    )
    g.note(16.8, -5.45, "black, arrow forward: the value and its shape", ha="left", va="center")
    g.note(16.8, -5.9, "red, dashed, arrow back: $dV = \\partial L/\\partial V$", BACKWARD, ha="left", va="center")
    return g


FIGURES: dict[str, Callable[[], Graph]] = {
    "dense_layer.svg": dense_layer,
    "softmax_cross_entropy.svg": softmax_cross_entropy,
    "batch_normalisation.svg": batch_normalisation,
    "attention_head.svg": attention_head,
}


def main(out_dir: Path = HERE) -> list[Path]:
    """Write every figure into `out_dir` and return the paths written."""
    plt.rcParams["svg.hashsalt"] = "backprop-parity"
    plt.rcParams["svg.fonttype"] = "path"
    plt.rcParams["font.family"] = "DejaVu Sans"
    plt.rcParams["mathtext.fontset"] = "dejavusans"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        path = out_dir / name
        draw().save(path)
        written.append(path)
    return written


if __name__ == "__main__":
    for written in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(written)
