"""The Keras 3 (TensorFlow backend) twin of every from_scratch piece, built from the same architecture description.

Importing this package pins the settings that change TensorFlow's float32 results, before TensorFlow loads:
oneDNN's fused kernels off (TF_ENABLE_ONEDNN_OPTS=0, unless the caller set it) and op determinism on.
`settings()` reports what was in force.
"""

import os
import sys

#: True when TensorFlow was loaded before this package could pin its settings (then oneDNN is as TensorFlow found
#: it at its own import, whatever TF_ENABLE_ONEDNN_OPTS says now); `settings()` reports it.
TENSORFLOW_PRELOADED = "tensorflow" in sys.modules and os.environ.get("BACKPROP_PARITY_PINNED") != "1"

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_impl.model import KerasPass, build_model, loss_and_gradients, settings  # noqa: E402

__all__ = ["KerasPass", "build_model", "loss_and_gradients", "settings"]
