"""Models written the way tutorials and published Keras code write them (nobody on edge_attn wrote these
patterns for edge_attn): raw TF ops, BN after convs with fused activations, float ``units``, ``tf.pad``
shortcuts, shared channel-attention MLPs applied to (1, 1, C) tensors, and Lambda-based CBAM.

Also the digits data split into a training file and a held-out test file, and a short float training
loop, so the conversions in :mod:`tests.test_real_models` are measured on samples the model never saw.
"""

import textwrap

import numpy as np

from edge_attn._keras import keras, tf

L = keras.layers


def tutorial_se_block(x, channels, ratio=16):
    """Identity-ish ResNet block as tutorials write it: Conv2D(activation=relu) → BN (×3), raw-op SE with
    float ``units``, ``tf.reshape`` and ``tf.multiply``, channel ``tf.pad`` shortcut, ``tf.add`` + relu."""
    shortcut = x
    y = L.BatchNormalization()(L.Conv2D(channels, 3, padding="same", activation=tf.nn.relu)(x))
    y = L.BatchNormalization()(L.Conv2D(channels, 3, padding="same", activation=tf.nn.relu)(y))
    wide = 2 * channels
    y = L.BatchNormalization()(L.Conv2D(wide, 3, padding="same", activation=tf.nn.relu)(y))
    squeeze = tf.reduce_mean(y, [1, 2])
    excite = L.Dense(wide / ratio * 4, activation=tf.nn.relu)(squeeze)  # float units, as in the tutorial
    excite = tf.nn.sigmoid(L.Dense(wide, activation=tf.nn.relu)(excite))
    y = tf.multiply(y, tf.reshape(excite, [-1, 1, 1, wide]))
    shortcut = tf.pad(shortcut, [[0, 0], [0, 0], [0, 0], [0, wide - shortcut.shape[-1]]])
    return tf.nn.relu(tf.add(y, shortcut))


def tutorial_cbam_block(x, channels, ratio=4):
    """CBAM (Woo et al. 2018) as raw ops: ONE channel MLP shared by the avg and max paths on (1, 1, C)
    tensors, nested reduce_max, tf.concat of channel max/mean, 3×3 spatial conv, residual add."""
    y = L.BatchNormalization()(L.Conv2D(channels, 3, padding="same", activation="relu")(x))
    avg = tf.reduce_mean(y, axis=[1, 2], keepdims=True)
    mx = tf.reduce_max(tf.reduce_max(y, axis=1, keepdims=True), axis=2, keepdims=True)
    hidden, out = L.Dense(channels // ratio, activation="relu"), L.Dense(channels)
    gate = tf.nn.sigmoid(out(hidden(avg)) + out(hidden(mx)))
    y = y * gate
    pooled = tf.concat([tf.reduce_max(y, axis=-1, keepdims=True), tf.reduce_mean(y, axis=-1, keepdims=True)], -1)
    y = y * L.Conv2D(1, 3, padding="same", activation="sigmoid")(pooled)
    return tf.nn.relu(y + x)


def tutorial_model(block, shape=(16, 16, 1), classes=10, softmax=False):
    inputs = keras.Input(shape)
    x = L.BatchNormalization()(L.Conv2D(16, 3, padding="same", activation=tf.nn.relu)(inputs))
    x = block(x, 16)
    x = L.MaxPooling2D()(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(classes, activation="softmax" if softmax else None)(x)
    return keras.Model(inputs, outputs, name=block.__name__.replace("_block", ""))


# Published Keras CBAM code (kobiso/CBAM-keras, models/attention_module.py and resnet_v1.py) writes the
# spatial pooling as Lambda layers whose code uses the module's own import of the Keras backend as ``K``, and
# attaches CBAM to every ResNet v1 block after its second conv-BN, before the shortcut add.
LAMBDA_CBAM_MODULE = textwrap.dedent('''
    """A user's training script (imported with --import): its Lambda layers use ``K`` from here."""
    import tensorflow as tf
    from tensorflow.keras import backend as K
    from tensorflow.keras import layers as L
    from tensorflow.keras.models import Model


    def channel_attention(x, ratio=8):
        channels = x.shape[-1]
        shared_1 = L.Dense(channels // ratio, activation="relu", kernel_initializer="he_normal")
        shared_2 = L.Dense(channels, kernel_initializer="he_normal")
        avg = shared_2(shared_1(L.Reshape((1, 1, channels))(L.GlobalAveragePooling2D()(x))))
        mx = shared_2(shared_1(L.Reshape((1, 1, channels))(L.GlobalMaxPooling2D()(x))))
        gate = L.Activation("sigmoid")(L.Add()([avg, mx]))
        return L.multiply([x, gate])


    def spatial_attention(x):
        avg = L.Lambda(lambda t: K.mean(t, axis=3, keepdims=True))(x)
        mx = L.Lambda(lambda t: K.max(t, axis=3, keepdims=True))(x)
        gate = L.Conv2D(1, 7, padding="same", activation="sigmoid", kernel_initializer="he_normal",
                        use_bias=False)(L.Concatenate(axis=3)([avg, mx]))
        return L.multiply([x, gate])


    def cbam_block(x, ratio=8):
        return spatial_attention(channel_attention(x, ratio))


    def resnet_layer(x, filters, strides=1, activation="relu"):
        x = L.Conv2D(filters, 3, strides=strides, padding="same", kernel_initializer="he_normal")(x)
        x = L.BatchNormalization()(x)
        return L.Activation(activation)(x) if activation else x


    def build(shape=(16, 16, 1), classes=10, filters=16):
        inputs = L.Input(shape)
        x = resnet_layer(inputs, filters)
        for stage in range(2):
            strides = 2 if stage else 1
            y = resnet_layer(x, filters, strides)
            y = cbam_block(resnet_layer(y, filters, activation=None))
            if strides > 1:
                x = L.Conv2D(filters, 1, strides=strides, padding="same", kernel_initializer="he_normal")(x)
            x = L.Activation("relu")(L.add([x, y]))
            filters *= 2
        x = L.GlobalAveragePooling2D()(x)
        return Model(inputs, L.Dense(classes, activation="softmax", kernel_initializer="he_normal")(x),
                     name="lambda_cbam")
''')


def digits_split(shape=(16, 16, 1), test_fraction=0.3, seed=0):
    """(x_train, y_train, x_test, y_test): scikit-learn's digits scaled to [0, 1], resized, split by a seeded
    permutation, stratification left to chance (1797 samples: every class has ~50 test samples)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., None]
    x = tf.image.resize(x, shape[:2], method="bilinear").numpy()
    if shape[-1] == 3:
        x = np.repeat(x, 3, axis=-1)
    order = np.random.default_rng(seed).permutation(len(x))
    test = int(round(test_fraction * len(x)))
    return x[order[test:]], digits.target[order[test:]], x[order[:test]], digits.target[order[:test]]


def train_float(model, x, y, epochs=12, seed=0):
    """A short float training (Adam, cross-entropy on logits or probabilities as the model outputs)."""
    keras.utils.set_random_seed(seed)
    probabilities = model.layers[-1].get_config().get("activation") == "softmax"
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    # BN statistics recomputed over the whole training set in one pass: these small digit models learn to
    # lean on batch statistics, and the moving averages alone left them at ~30% eval accuracy.
    batch_norms = [layer for layer in model.layers if isinstance(layer, L.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer in batch_norms:
        layer.momentum = 0.99
    return model
