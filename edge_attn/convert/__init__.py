"""Recipes (TOML data), Keras → TFLite conversion, and .tflite inspection.

``load_recipe``/``list_recipes`` and ``inspect_tflite`` are cheap to import; ``convert_model`` and
``write_tflite`` import TensorFlow, so they are loaded on first use (``import edge_attn`` stays cheap).
"""

from edge_attn.convert.inspect import OpInfo, TensorInfo, TFLiteInfo, inspect_tflite
from edge_attn.convert.recipe import QatSettings, Recipe, list_recipes, load_recipe

__all__ = ["Recipe", "QatSettings", "load_recipe", "list_recipes", "convert_model", "write_tflite",
           "inspect_tflite", "TFLiteInfo", "OpInfo", "TensorInfo"]


def __getattr__(name):
    if name in ("convert_model", "write_tflite"):
        from edge_attn.convert import converter

        return getattr(converter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
