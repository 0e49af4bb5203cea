"""The zoo's optimizer bugs, each a subclass of the scratch optimizer trained in lockstep with Keras's (`_train`):
Adam's betas exchanged, Adam's bias correction without its power t, SGD momentum applied with the wrong sign.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from from_scratch.optimizers import SGD, Adam

Array = np.ndarray


def _train(optimizer: Any, steps: int = 30) -> Any:
    from compare.data import spirals
    from compare.training import run_training

    x, y = spirals(n=120, seed=1)
    return run_training("2-16:tanh-8-3", x, y, optimizer, epochs=10, batch_size=12, max_steps=steps)


class SwappedBetas(Adam):
    """beta_1 and beta_2 exchanged in the update."""

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        self.beta_1, self.beta_2 = self.beta_2, self.beta_1
        try:
            super().update_step(i, w, g, lr)
        finally:
            self.beta_1, self.beta_2 = self.beta_2, self.beta_1


class MissingBiasPower(Adam):
    """The bias correction written 1 - beta (no ^t): right at t = 1, wrong from the second step on."""

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        iterations, self.iterations = self.iterations, 0
        try:
            super().update_step(i, w, g, lr)
        finally:
            self.iterations = iterations


class MomentumWrongSign(SGD):
    """w <- w - m where Keras's velocity convention (m <- mu m - lr g) needs w <- w + m."""

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        super().update_step(i, w, g, lr)
        w -= 2 * self.slots["momentums"][i]  # undo the + m and apply - m
