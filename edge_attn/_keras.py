"""The one place that selects Keras 2 (tf-keras) before TensorFlow is imported.

tensorflow-model-optimization only understands Keras 2 models; with Keras 3 (TensorFlow's default
since 2.16) ``quantize_model`` refuses every model. Every edge_attn module imports ``tf`` and ``keras``
from here, never ``tensorflow.keras`` or ``keras`` directly.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # read by TensorFlow and tfmot at import time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ INFO/WARNING chatter off the terminal

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
