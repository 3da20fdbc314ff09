"""ResNet v1 residual blocks as functional helpers with predictable layer names (keras-hub style).

Basic and bottleneck blocks follow He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),
post-activation (v1), with the bottleneck's stride on its 3x3 conv (torchvision's "ResNet v1.5"). Attention
(SE: Hu et al., CVPR 2018; CBAM: Woo et al., ECCV 2018) sits where both papers put it: on the residual
branch after its last batch norm, before the addition. The helpers work on 1D (N, L, C) and 2D (N, H, W, C)
tensors alike; the rank of ``x`` picks Conv1D or Conv2D.

A block named ``stage2_block1`` creates ``stage2_block1_conv1``, ``_bn1``, ``_relu1``, ``_conv2``, ``_bn2``,
(bottleneck: ``_relu2``, ``_conv3``, ``_bn3``), ``_se`` / ``_cbam``, ``_shortcut_conv``, ``_shortcut_bn``,
``_add`` and ``_out``.
"""

from edge_attn._keras import keras
from edge_attn.layers import create_attn

# torch-style batch-norm settings (momentum 0.9 in Keras is PyTorch's 0.1), as in the published ResNets.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
BOTTLENECK_EXPANSION = 4


def conv(x, filters, kernel_size, strides, name):
    """Bias-free He-normal convolution (a batch norm follows every conv); 1D or 2D after the rank of ``x``.

    ``padding="same"`` everywhere: TFLite's native padding, no separate PAD ops for the delegates.
    """
    layer = keras.layers.Conv1D if x.shape.rank == 3 else keras.layers.Conv2D
    return layer(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                 kernel_initializer="he_normal", name=name)(x)


def batch_norm(x, name):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def relu(x, name):
    return keras.layers.ReLU(name=name)(x)


def _shortcut(x, channels, stride, name):
    """Identity when the shape is kept, else the paper's projection (option B): 1x1 conv + batch norm."""
    if stride == 1 and x.shape[-1] == channels:
        return x
    x = conv(x, channels, 1, stride, name=f"{name}_shortcut_conv")
    return batch_norm(x, name=f"{name}_shortcut_bn")


def _branch(x, convs, name):
    """The residual branch: conv + batch norm for each ``(filters, kernel_size, strides)``, a ReLU between
    them; layers numbered from 1 (``_conv1``, ``_bn1``, ``_relu1``, ``_conv2``, ...)."""
    for i, (filters, kernel_size, strides) in enumerate(convs, start=1):
        if i > 1:
            x = relu(x, name=f"{name}_relu{i - 1}")
        x = conv(x, filters, kernel_size, strides, name=f"{name}_conv{i}")
        x = batch_norm(x, name=f"{name}_bn{i}")
    return x


def _attention(x, attn, name, attn_kwargs):
    """Apply the attention layer chosen by ``attn`` (a key such as "se", a layer class, or None)."""
    suffix = attn if isinstance(attn, str) else "attn"
    layer = create_attn(attn, x.shape[-1], name=f"{name}_{suffix}", **attn_kwargs)
    return x if layer is None else layer(x)


def _merge(residual, shortcut, name):
    x = keras.layers.Add(name=f"{name}_add")([residual, shortcut])
    return relu(x, name=f"{name}_out")


def apply_basic_block(x, filters, stride=1, attn=None, *, name, **attn_kwargs):
    """Two 3x3 convs (ResNet-18/34, CIFAR ResNets); output has ``filters`` channels.

    ``attn_kwargs`` go to the attention layer (e.g. ``ratio=16``).
    """
    shortcut = _shortcut(x, filters, stride, name)
    y = _branch(x, [(filters, 3, stride), (filters, 3, 1)], name)
    y = _attention(y, attn, name, attn_kwargs)
    return _merge(y, shortcut, name)


def apply_bottleneck_block(x, filters, stride=1, attn=None, *, name, **attn_kwargs):
    """1x1 reduce, 3x3 (strided), 1x1 expand (ResNet-50/101); output has ``4 * filters`` channels."""
    channels = filters * BOTTLENECK_EXPANSION
    shortcut = _shortcut(x, channels, stride, name)
    y = _branch(x, [(filters, 1, 1), (filters, 3, stride), (channels, 1, 1)], name)
    y = _attention(y, attn, name, attn_kwargs)
    return _merge(y, shortcut, name)


BLOCKS = {"basic": apply_basic_block, "bottleneck": apply_bottleneck_block}
