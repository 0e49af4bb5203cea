"""Optimizers with Keras's exact update arithmetic.

Every optimizer shares `update(params, grads)`: it changes the parameter arrays in place, in the order Keras
applies a step:

    1. gradient clipping (clipnorm per tensor, else global_clipnorm, else clipvalue)
    2. weight decay, if set:  w <- w - w wd lr
    3. the optimizer's own rule (`update_step`) with lr = the learning rate at `iterations`
    4. iterations <- iterations + 1

Keras quirk: some hyper-parameters pass through a float32 tensor even in a float64 model (`ops.cast(0.9,
"float64")` converts the Python float to float32 first). `fl32(c)` marks each place; reproducing it made whole
trajectories bit-identical, while the textbook constants drift by 1e-8 (SGD momentum) to 2.6e-6 (Adam).
Non-trainable weights (BatchNormalization's moving statistics) are skipped: pass `trainable` flags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from from_scratch.errors import BadInputError, check_flag, check_real, from_registry

Array = np.ndarray


def fl32(c: float) -> float:
    """The Python float c rounded to float32 and back, as Keras's `ops.cast(c, dtype)` does."""
    return float(np.float32(c))


class ExponentialDecay:
    """lr(step) = initial * rate ^ (step / decay_steps) (floor of the exponent with staircase=True).

    Keras computes it in float32 whatever the model dtype (`convert_to_tensor(initial)` makes a float32 tensor),
    so the scratch version does too, and the update then casts it to the model dtype. The float32 power is taken
    as the correctly rounded one (double pow, rounded once), which NumPy's float32 `power` is not; TensorFlow's
    own float32 pow still differs from it by one float32 ulp at a few steps (measured: steps 198, 273 and 676 of
    the first 2000 for 0.1 x 0.9^(step/10)), which moves a float64 trajectory by ~1e-10 from that step on.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False):
        self.initial_learning_rate = check_real(
            "ExponentialDecay", "initial_learning_rate", initial_learning_rate, 0, low_open=True
        )
        self.decay_steps = check_real("ExponentialDecay", "decay_steps", decay_steps, 0, low_open=True)
        self.decay_rate = check_real("ExponentialDecay", "decay_rate", decay_rate, 0, low_open=True)
        self.staircase = staircase

    def __call__(self, step: int) -> np.float32:
        p = np.float32(step) / np.float32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        power = np.float32(math.pow(fl32(self.decay_rate), float(p)))
        return np.float32(self.initial_learning_rate) * power

    def config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }


class Optimizer:
    """The shared machinery: clipping, weight decay, learning rate (constant or schedule), iterations, slots."""

    name = ""

    def __init__(
        self,
        learning_rate: float | ExponentialDecay = 0.001,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        owner = type(self).__name__
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise BadInputError("set at most one of clipnorm, clipvalue, global_clipnorm (as Keras)")
        if not isinstance(learning_rate, ExponentialDecay):
            learning_rate = check_real(owner, "learning_rate", learning_rate, 0, low_open=True)
        self.learning_rate = learning_rate

        def optional(name: str, value: Any, low_open: bool) -> float | None:
            return None if value is None else check_real(owner, name, value, 0, low_open=low_open)

        self.weight_decay = optional("weight_decay", weight_decay, False)
        self.clipnorm = optional("clipnorm", clipnorm, True)
        self.clipvalue = optional("clipvalue", clipvalue, True)
        self.global_clipnorm = optional("global_clipnorm", global_clipnorm, True)
        self.iterations = 0
        self.slots: dict[str, list[Array]] = {}

    def config(self) -> dict[str, Any]:
        """Constructor arguments, so the Keras twin can be built with the same ones."""
        lr = self.learning_rate
        return {
            "learning_rate": lr.config() if isinstance(lr, ExponentialDecay) else lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
        }

    def current_learning_rate(self, dtype: np.dtype) -> Any:
        """lr at the current iteration, as the update sees it (a schedule is evaluated in float32, then cast)."""
        lr = self.learning_rate(self.iterations) if callable(self.learning_rate) else self.learning_rate
        return dtype.type(lr)

    def build(self, params: Sequence[Array]) -> None:
        """Create the optimizer's state (zeros like each parameter unless a subclass says otherwise)."""

    def clip(self, grads: list[Array]) -> list[Array]:
        """Keras's order of precedence: clipnorm (per tensor), else global_clipnorm, else clipvalue."""
        if self.clipnorm:
            c = self.clipnorm
            return [g * g.dtype.type(c) / np.maximum(np.sqrt((g * g).sum()), g.dtype.type(c)) for g in grads]
        if self.global_clipnorm:
            c = self.global_clipnorm
            norm = np.sqrt(sum((g * g).sum() for g in grads))
            scale = c * np.minimum(1.0 / norm, 1.0 / c)  # c / max(norm, c), written as Keras writes it
            return [g * g.dtype.type(scale) for g in grads]
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def update(self, params: Sequence[Array], grads: Sequence[Array], trainable: Sequence[bool] | None = None) -> None:
        """One optimizer step on `params` (in place), Keras's order: clip, weight decay, rule, iterations += 1."""
        pairs = [(p, g) for i, (p, g) in enumerate(zip(params, grads)) if trainable is None or trainable[i]]
        if not self.slots:
            self.build([p for p, _ in pairs])
        weights = [p for p, _ in pairs]
        clipped = self.clip([g for _, g in pairs])
        lr = self.current_learning_rate(weights[0].dtype)
        if self.weight_decay:
            wd = weights[0].dtype.type(fl32(self.weight_decay))
            for w in weights:
                w -= w * wd * lr
        for i, (w, g) in enumerate(zip(weights, clipped)):
            self.update_step(i, w, g, lr)
        self.iterations += 1

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        raise NotImplementedError

    def _zeros(self, params: Sequence[Array], *names: str) -> None:
        for name in names:
            self.slots[name] = [np.zeros_like(p) for p in params]


class SGD(Optimizer):
    """Plain: w <- w - lr g.  Momentum mu~ = fl32(mu):  m <- mu~ m - lr g;  w <- w + m.
    Nesterov:  m as above, then w <- w + mu~ m - lr g (with the new m)."""

    name = "sgd"

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs: Any):
        super().__init__(learning_rate, **kwargs)
        self.momentum = check_real("SGD", "momentum", momentum, 0, 1)
        self.nesterov = check_flag("SGD", "nesterov", nesterov)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def build(self, params: Sequence[Array]) -> None:
        self._zeros(params, "momentums")

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        if not self.momentum:
            w -= g * lr
            return
        mu = w.dtype.type(fl32(self.momentum))
        m = self.slots["momentums"][i]
        m[...] = m * mu - g * lr
        if self.nesterov:
            w += m * mu - g * lr
        else:
            w += m


class Adam(Optimizer):
    """Keras's Adam (t = iterations + 1):

        m <- m + (g - m)(1 - b1);   v <- v + (g^2 - v)(1 - b2)           (AMSGrad: vhat <- max(vhat, v), used for v)
        alpha = lr sqrt(1 - fl32(b2)^t) / (1 - fl32(b1)^t);   w <- w - m alpha / (sqrt(v) + eps)

    Departures from the paper: the bias correction is folded into alpha, so eps is added to sqrt(v), not to
    sqrt(v_hat); the powers use the float32-rounded betas, the moment updates the exact ones.
    """

    name = "adam"

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        owner = type(self).__name__  # beta = 1 would divide by 1 - beta^t = 0
        self.beta_1 = check_real(owner, "beta_1", beta_1, 0, 1, high_open=True)
        self.beta_2 = check_real(owner, "beta_2", beta_2, 0, 1, high_open=True)
        self.epsilon, self.amsgrad = check_real(owner, "epsilon", epsilon, 0), check_flag(owner, "amsgrad", amsgrad)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }

    def build(self, params: Sequence[Array]) -> None:
        self._zeros(params, "momentums", "velocities", "velocity_hats")

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        t = w.dtype.type(self.iterations + 1)
        b1_power = np.power(w.dtype.type(fl32(self.beta_1)), t)
        b2_power = np.power(w.dtype.type(fl32(self.beta_2)), t)
        alpha = lr * np.sqrt(1 - b2_power) / (1 - b1_power)
        m, v = self.slots["momentums"][i], self.slots["velocities"][i]
        m += (g - m) * (1 - self.beta_1)
        v += (g * g - v) * (1 - self.beta_2)
        if self.amsgrad:
            v_hat = self.slots["velocity_hats"][i]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        w -= m * alpha / (np.sqrt(v) + self.epsilon)


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras default wd = 0.004): w <- w - w fl32(wd) lr before the Adam step."""

    name = "adamw"

    def __init__(self, learning_rate: Any = 0.001, weight_decay: float = 0.004, **kwargs: Any) -> None:
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """v <- rho v + (1 - rho) g^2; centered: gbar <- rho gbar + (1 - rho) g, denominator v - gbar^2 + eps, else
    v + eps; delta = lr g / sqrt(denominator); with momentum p <- mu p + delta, w <- w - p; else w <- w - delta.
    (All constants exact: Keras multiplies by the Python floats directly here.)"""

    name = "rmsprop"

    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho = check_real("RMSprop", "rho", rho, 0, 1, high_open=True)
        self.momentum = check_real("RMSprop", "momentum", momentum, 0, 1, high_open=True)
        self.epsilon = check_real("RMSprop", "epsilon", epsilon, 0)
        self.centered = check_flag("RMSprop", "centered", centered)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }

    def build(self, params: Sequence[Array]) -> None:
        self._zeros(params, "velocities", "momentums", "average_gradients")

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        v = self.slots["velocities"][i]
        v[...] = self.rho * v + (1 - self.rho) * (g * g)
        if self.centered:
            gbar = self.slots["average_gradients"][i]
            gbar[...] = self.rho * gbar + (1 - self.rho) * g
            denominator = v - gbar * gbar + self.epsilon
        else:
            denominator = v + self.epsilon
        delta = lr * g / np.sqrt(denominator)
        if self.momentum > 0:
            p = self.slots["momentums"][i]
            p[...] = self.momentum * p + delta
            w -= p
        else:
            w -= delta


class Adagrad(Optimizer):
    """a starts at fl32(initial_accumulator_value) (0.1 by default); a <- a + g^2; w <- w - lr g / sqrt(a + eps)."""

    name = "adagrad"

    def __init__(
        self, learning_rate: Any = 0.001, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7, **kwargs: Any
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = check_real(
            "Adagrad", "initial_accumulator_value", initial_accumulator_value, 0
        )
        self.epsilon = check_real("Adagrad", "epsilon", epsilon, 0)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }

    def build(self, params: Sequence[Array]) -> None:
        start = fl32(self.initial_accumulator_value)
        self.slots["accumulators"] = [np.full_like(p, start) for p in params]

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        a = self.slots["accumulators"][i]
        a += g * g
        w -= lr * g / np.sqrt(a + self.epsilon)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
}


def get_optimizer(optimizer: str | Optimizer, **kwargs: Any) -> Optimizer:
    """An optimizer from its Keras name (with constructor arguments) or an existing object."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    return from_registry("optimizer", OPTIMIZERS, optimizer, **kwargs)
