"""Android / iOS app bundles: standard TFLite metadata (``TFLITE_METADATA`` + labels) embedded in the model,
app-ready assets, a manifest with hashes, tensor specs and delegate order, and integration notes.

Modules: ``metadata_schema`` (the metadata flatbuffer tables), ``metadata`` (embed/read it in a .tflite),
``integration`` (INTEGRATION.md), ``interface`` (uint8/float32 I/O around an int8 graph), ``consumers`` (which
app runtimes take a model), ``bundle`` (``bundle``/``verify_bundle``/``check_bundle``). No TensorFlow import.
"""

from edge_attn.bundle.bundle import MANIFEST, TARGETS, BundleCheck, bundle, check_bundle, verify_bundle

__all__ = ["MANIFEST", "TARGETS", "BundleCheck", "bundle", "check_bundle", "verify_bundle"]
