"""Recipes (TOML data), Keras → TFLite conversion, and .tflite inspection.

``load_recipe``/``list_recipes`` and ``inspect_tflite`` are cheap to import; ``convert_model`` and
``write_tflite`` import TensorFlow, so they are loaded on first use (``import edge_attn`` stays cheap).

This package is also the Python API's entry point: ``edge_attn.convert(model, ...)`` calls
:func:`edge_attn.api.convert`. Python makes ``edge_attn.convert`` this subpackage as soon as anything
imports it, so the subpackage itself is made callable rather than shadowed by a function of that name.
"""

import sys
import types

from edge_attn.convert.inspect import OpInfo, TensorInfo, TFLiteInfo, inspect_tflite
from edge_attn.convert.recipe import QatSettings, Recipe, list_recipes, load_recipe

__all__ = ["Recipe", "QatSettings", "load_recipe", "list_recipes", "convert_model", "write_tflite",
           "inspect_tflite", "TFLiteInfo", "OpInfo", "TensorInfo"]


def __getattr__(name):
    if name in ("convert_model", "write_tflite"):
        from edge_attn.convert import converter

        return getattr(converter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, model, **kwargs):
        """Quantize and convert ``model``: see :func:`edge_attn.api.convert`."""
        from edge_attn.api import convert

        return convert(model, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
