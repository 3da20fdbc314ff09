"""Android / iOS app bundles: standard TFLite metadata (``TFLITE_METADATA`` + labels) embedded in the model,
app-ready assets, a manifest with hashes, tensor specs and delegate order, and integration notes.

Modules: ``metadata_schema`` (the metadata flatbuffer tables), ``metadata`` (embed/read it in a .tflite),
``integration`` (INTEGRATION.md), ``bundle`` (``bundle``/``verify_bundle``). No TensorFlow import.
"""

from edge_attn.bundle.bundle import MANIFEST, TARGETS, bundle, verify_bundle

__all__ = ["MANIFEST", "TARGETS", "bundle", "verify_bundle"]
