"""Assemble a functional Keras ResNet from a registry :class:`~edge_attn.models.registry.ModelSpec`.

stem (``stem_conv``, ``stem_bn``, ``stem_relu``, optional ``stem_pool``) -> stages of residual blocks
(``stage2_block1`` ...; the first block of every stage after the first has stride 2) -> ``avg_pool``
(global average) -> ``logits`` (Dense, no softmax). He et al., CVPR 2016, Table 1 and Section 4.2.
"""

from edge_attn._keras import keras
from edge_attn.models.blocks import BLOCKS, batch_norm, conv, relu

# SE and CBAM reduction ratio of the published SE-ResNets and CBAM-ResNets (Hu et al. 2018, Woo et al. 2018).
ATTENTION_RATIO = 16


def build_resnet(spec, input_shape, classes, **attn_kwargs):
    """The model described by ``spec`` for ``input_shape`` (no batch axis), ending in ``classes`` logits.

    Inputs are validated by :func:`edge_attn.models.create_model`; ``attn_kwargs`` override the attention
    layer's defaults (``ratio=16``).
    """
    pool, global_pool = ((keras.layers.MaxPooling1D, keras.layers.GlobalAveragePooling1D) if spec.dims == 1
                         else (keras.layers.MaxPooling2D, keras.layers.GlobalAveragePooling2D))
    if spec.attention is not None:
        attn_kwargs = {"ratio": ATTENTION_RATIO, **attn_kwargs}
    apply_block = BLOCKS[spec.block]

    inputs = keras.Input(shape=input_shape, name="input")
    x = conv(inputs, spec.stem_filters, spec.stem_kernel, spec.stem_strides, name="stem_conv")
    x = batch_norm(x, name="stem_bn")
    x = relu(x, name="stem_relu")
    if spec.stem_pool:
        x = pool(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (blocks, filters) in enumerate(zip(spec.stage_blocks, spec.stage_filters), start=2):
        for block in range(1, blocks + 1):
            stride = 2 if stage > 2 and block == 1 else 1
            x = apply_block(x, filters, stride, spec.attention, name=f"stage{stage}_block{block}", **attn_kwargs)
    x = global_pool(name="avg_pool")(x)
    # Glorot (Keras' default) for the classifier: He-normal is for ReLU-followed layers.
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=spec.name)
