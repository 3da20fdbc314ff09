"""The model zoo: ResNets (ImageNet-style, CIFAR-style, 1D), each plain, with SE and with CBAM attention.

>>> create_model("se_resnet20", input_shape=(16, 16, 1), classes=10)   # doctest: +SKIP

``list_models()`` / ``describe_models()`` / ``is_registered()`` never import TensorFlow.
"""

from edge_attn.errors import BadInput
from edge_attn.models.registry import (describe_models, get_spec, is_registered, list_models, validate_classes,
                                       validate_input_shape)

__all__ = ["create_model", "describe_models", "is_registered", "list_models"]


def create_model(name, input_shape=None, classes=1000, **kw):
    """Build the registered model ``name`` (uncompiled, randomly initialised; logits, no softmax).

    ``input_shape`` excludes the batch axis and defaults to the family's: (224, 224, 3) ImageNet-style,
    (32, 32, 3) CIFAR-style, (1000, 1) 1D. ``kw`` are options of the attention layer (e.g. ``ratio=8``;
    default ``ratio=16``). Every bad argument raises :class:`~edge_attn.errors.BadInput` naming it.
    """
    spec = get_spec(name)
    classes = validate_classes(classes)
    input_shape = validate_input_shape(spec, input_shape)
    if kw:
        _check_attention_options(spec, kw)

    from edge_attn.models.resnet import build_resnet  # TensorFlow is imported only to build

    return build_resnet(spec, input_shape, classes, **kw)


def _check_attention_options(spec, options):
    """Refuse options the attention layer would reject, before spending time on the build."""
    received = "Received: " + ", ".join(f"{k}={v!r}" for k, v in options.items())
    if spec.attention is None:
        raise BadInput("model options", f"{spec.name} has no attention layer to take options; {received}")
    from edge_attn.layers import create_attn

    try:
        create_attn(spec.attention, spec.stage_filters[0], **options)
    except (TypeError, ValueError) as e:  # Keras: TypeError for unknown keywords; the layers: ValueError
        problem = " ".join(str(a) for a in e.args)
        raise BadInput("model options", f"{spec.name} ({spec.attention} attention): {problem}; {received}") from e
