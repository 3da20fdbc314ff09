"""GPU / NNAPI / XNNPACK delegate compatibility: which ops of a .tflite model each delegate takes, and why not.

``tf.lite.experimental.Analyzer(gpu_compatibility=True)`` no longer runs the GPU delegate's checks, so edge_attn
carries its own rules, transcribed per op from LiteRT's sources (``gpu_compatibility.cc``, ``nnapi_delegate.cc``,
``xnnpack_delegate.cc`` and the XNNPACK README) as summarised in ``docs/delegate-rules.md``; every rule cites
its upstream file. Modules: ``graph`` (the model view the rules read), ``rules`` (the rule data types),
``gpu``/``nnapi``/``xnnpack`` (one table each), ``partition`` (TFLite's partitioner), ``report``, ``compat``.

    report = check_compat("model.tflite", "nnapi", android_api=29)
    print(format_compat(report))

Only the main subgraph is judged; ops missing from a table (rare in SE/CBAM CNNs) count as not delegated and are
listed in the warnings. The module imports no TensorFlow.
"""

from edge_attn.delegates.compat import DELEGATES, check_compat
from edge_attn.delegates.report import CompatReport, OpVerdict, format_compat

__all__ = ["DELEGATES", "CompatReport", "OpVerdict", "check_compat", "format_compat"]
