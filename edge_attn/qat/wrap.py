"""Make any zoo model (or any functional model of supported layers) quantization-aware.

``quantize_aware(model)`` is what tfmot's ``quantize_model`` would be if it accepted SE/CBAM models:

0. **normalize**: raw-TF-op layers (``TFOpLambda``: ``tf.reduce_mean``, ``x * s``, ...) of a user's model
   are rewritten into equivalent Keras layers (:mod:`edge_attn.normalize`; zoo models have none);
1. **lower**: every edge_attn attention layer is replaced by its ``decompose()`` graph of primitive
   layers (float-identical), so fake-quant nodes can sit between the pooling, MLP, gate and scale,
   exactly where TFLite will have int8 tensors; a BatchNormalization / ReLU after a Conv1D is folded into
   it (:mod:`edge_attn.qat.conv1d_fold`: tfmot folds them only after Conv2D/Dense);
2. **annotate**: each layer gets tfmot's default 8-bit config, or one of edge_attn's configs
   (:mod:`edge_attn.qat.configs`) for the layers tfmot does not know; layers neither knows are listed
   in one error, by name and class, with what to do;
3. **apply**: ``tfmot.quantization.keras.quantize_apply`` inserts the fake-quant ops (and folds
   Conv2D+BatchNorm(+ReLU) patterns its transforms recognise), with :class:`edge_attn.qat.layout.EdgeAttnScheme`:
   tfmot's scheme, except that a Conv2D/Dense followed by a ReLU layer keeps its weight fake-quant.
"""

from dataclasses import dataclass, field

from edge_attn import _compat
from edge_attn._keras import keras
import tensorflow_model_optimization as tfmot

from edge_attn.errors import BadInput
from edge_attn.heads import split_head, with_head
from edge_attn.normalize import normalize
from edge_attn.qat.configs import CUSTOM_OBJECTS, EDGE_ATTN_CONFIGS
from edge_attn.qat.conv1d_fold import fold_into_conv1d
from edge_attn.qat.layout import EdgeAttnScheme
from edge_attn.graph import rebuild

_qk = tfmot.quantization.keras
_DEFAULT_REGISTRY = _qk.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()
# tfmot folds a BatchNormalization into these producers itself (default_8bit_transforms: only when the
# producer's activation is linear); a BN anywhere else is stand-alone and needs an output config of its own.
_BN_FOLDING_PRODUCERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def _folds_into_producer(batch_norm):
    producer = _producer(batch_norm)
    activation = getattr(getattr(producer, "activation", None), "__name__", None)
    return isinstance(producer, _BN_FOLDING_PRODUCERS) and activation == "linear"


@dataclass
class QuantizeAware:
    """The result of :func:`quantize_aware`.

    ``model`` is the quantize-aware (fake-quant) model to fine-tune and convert; ``float_model`` is the
    lowered float model it was made from (same layer names without tfmot's ``quant_`` prefix): the
    reference for range calibration and for per-layer error. ``rewrites`` lists what normalization
    replaced (see :func:`edge_attn.normalize.normalize`), empty for zoo models.
    """

    model: keras.Model
    float_model: keras.Model
    rewrites: list = field(default_factory=list)
    head: str | None = None  # "softmax"/"sigmoid" taken off the output (model and float_model give logits)

    def deployable(self):
        """The quantize-aware model with its probability head back on: what is converted and shipped."""
        return with_head(self.model, self.head)


def lower_attention(model):
    """Replace every layer that has a ``decompose(x)`` method by its primitive sub-graph."""

    def replace(layer, args, kwargs):
        if hasattr(layer, "decompose"):
            return layer.decompose(args[0])
        return None

    return rebuild(model, replace)


def _producer(layer):
    """The layer feeding ``layer`` when it is called once on one input, else None."""
    calls = _compat.inbound_nodes(layer)
    if len(calls) != 1:
        return None
    parents = calls[0].parent_nodes
    return parents[0].layer if len(parents) == 1 else None


def _config_for(layer):
    """The edge_attn QuantizeConfig for ``layer``, None for tfmot's default, or "unsupported"."""
    cls = type(layer)
    if cls is keras.layers.BatchNormalization and _folds_into_producer(layer):
        return None
    if cls in EDGE_ATTN_CONFIGS:
        return EDGE_ATTN_CONFIGS[cls]()
    if _DEFAULT_REGISTRY.supports(layer):
        return None
    return "unsupported"


def quantize_aware(model, trust_model_code=False, keep_float=None):
    """Return a :class:`QuantizeAware` for ``model`` (which is left untouched).

    Raises ``BadInput`` naming every layer that cannot be made quantization-aware. ``trust_model_code``
    lets normalization run ``Lambda`` layers' code to recognise them. ``keep_float(layer_name)``: layers it
    is true for get no fake-quant (a recipe's ``float`` precision rules; they need no int8 scheme either).
    """
    keep_float = keep_float or (lambda name: False)
    normalized, rewrites = normalize(model, trust_model_code=trust_model_code)
    # Trained and checked on logits; the head goes back on for conversion (QuantizeAware.deployable).
    lowered, head = split_head(fold_into_conv1d(lower_attention(normalized)))
    unsupported = [layer for layer in lowered.layers if not isinstance(layer, keras.layers.InputLayer)
                   and not keep_float(layer.name) and _config_for(layer) == "unsupported"]
    if unsupported:
        listed = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in unsupported)
        raise BadInput(model.name, f"cannot be made quantization-aware: no int8 scheme for {listed}; "
                       "replace these layers with standard Keras layers or edge_attn layers")

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer) or keep_float(layer.name):
            return layer
        config = _config_for(layer)
        return _qk.quantize_annotate_layer(layer, config) if config is not None else _qk.quantize_annotate_layer(layer)

    with _qk.quantize_scope(CUSTOM_OBJECTS):
        annotated = keras.models.clone_model(lowered, clone_function=annotate)
        annotated.set_weights(lowered.get_weights())
        quantized = _qk.quantize_apply(annotated, scheme=EdgeAttnScheme())
    return QuantizeAware(model=quantized, float_model=lowered, rewrites=rewrites, head=head)
