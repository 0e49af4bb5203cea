"""The Keras twin of each entry in from_scratch.optimizers.OPTIMIZERS (the eager training step is in model.py).

Steps run eagerly: under tf.function, TensorFlow's graph optimiser may rewrite x / sqrt(y) as x * rsqrt(y), which
changes last digits (grown to 1e-5 in RMSprop over 100 steps); eager arithmetic is reproducible op for op.
"""

from __future__ import annotations

from typing import Any

import keras

KERAS_OPTIMIZERS: dict[str, type] = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
}


def make_optimizer(name: str, config: dict[str, Any]) -> keras.optimizers.Optimizer:
    """The Keras optimizer `name` built with the scratch optimizer's arguments (a dict learning rate is an
    ExponentialDecay schedule). Build it after the model, so its learning-rate variable is in the model's floatx."""
    config = {k: v for k, v in config.items() if v is not None}
    lr = config.get("learning_rate")
    if isinstance(lr, dict):
        config["learning_rate"] = keras.optimizers.schedules.ExponentialDecay(**lr)
    return KERAS_OPTIMIZERS[name](**config)
