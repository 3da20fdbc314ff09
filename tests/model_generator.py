"""A seeded generator of random small functional Keras models, written the ways users write them.

``random_model(seed)`` draws a 1D (length 16) or 2D (8x8) model with 1-3 input channels from a vocabulary
of layer/op kinds (:data:`KINDS`): convolutions and Dense with and without fused activations,
BatchNormalization in every placement users put it, squeeze-and-excitation and CBAM variants written
with layers, raw TF ops and Python operators, hard-swish/hard-sigmoid both ways, constant arithmetic,
preprocessing layers, padding, pooling, permutes, strided-slice shortcuts, and several heads. The same
seed always gives the same model (architecture and weights). No ``Lambda`` layers: every model saves to
``.keras``/``.h5`` and loads without ``--trust-model-code``.

Every model is valid Keras (it builds and runs in float). ``model.generated_kinds`` lists the kinds
drawn, in order, so a failing seed can be read without rebuilding it.

``train_briefly(model, x, y)`` fits it in float for a few epochs so its logits depend on the input (see
its docstring and test_random_models).
"""

import numpy as np

from edge_attn._keras import keras, tf

L = keras.layers
ACTIVATIONS = ("relu", "relu6", "swish", "sigmoid", "tanh", "linear")


class _Builder:
    """Holds the random state and the names used while one model is drawn."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.kinds = []
        self.count = 0

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p):
        return bool(self.rng.random() < p)

    def name(self, kind):
        self.count += 1
        return f"{kind}_{self.count}"

    def note(self, kind):
        self.kinds.append(kind)


# ---------------------------------------------------------------- blocks shared by 1D and 2D models

def _conv(b, x, filters=None, kernel=None, strides=1, activation=None):
    rank = x.shape.rank
    filters = filters or int(b.pick((4, 6, 8)))
    activation = activation or b.pick(ACTIVATIONS)
    if rank == 4:
        kernel = kernel or int(b.pick((1, 3)))
        b.note(f"conv2d_{activation}")
        return L.Conv2D(filters, kernel, strides=strides, padding="same", activation=activation,
                        name=b.name("conv2d"))(x)
    kernel = kernel or int(b.pick((1, 3, 5)))
    b.note(f"conv1d_{activation}")
    return L.Conv1D(filters, kernel, strides=strides, padding="same", activation=activation, name=b.name("conv1d"))(x)


def _bn(b, x, where):
    b.note(f"bn_after_{where}")
    return L.BatchNormalization(name=b.name("bn"),
                                beta_initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=b.count),
                                gamma_initializer=keras.initializers.RandomUniform(0.5, 1.5, seed=b.count),
                                moving_mean_initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=b.count),
                                moving_variance_initializer=keras.initializers.RandomUniform(0.5, 1.5,
                                                                                             seed=b.count))(x)


def _relu(b, x):
    kind = b.pick(("relu_layer", "tf_nn_relu", "activation_relu"))
    b.note(kind)
    if kind == "relu_layer":
        return L.ReLU(name=b.name("relu"))(x)
    if kind == "tf_nn_relu":
        return tf.nn.relu(x)
    return L.Activation("relu", name=b.name("act"))(x)


def block_conv(b, x):
    return _conv(b, x)


def block_conv_bn(b, x):
    """Conv (linear) -> BN -> ReLU: the foldable pattern."""
    x = _conv(b, x, activation="linear")
    x = _bn(b, x, "conv_linear")
    return _relu(b, x)


def block_conv_act_bn(b, x):
    """Conv with a fused activation -> BN: the tutorial pattern (BN not foldable)."""
    x = _conv(b, x, activation=b.pick(("relu", "relu6", "swish", "tanh")))
    return _bn(b, x, "conv_activation")


def block_depthwise(b, x):
    if x.shape.rank != 4:
        return block_conv(b, x)
    activation = b.pick(ACTIVATIONS)
    b.note(f"depthwise_{activation}")
    x = L.DepthwiseConv2D(3, padding="same", activation=activation, name=b.name("dw"))(x)
    if b.chance(0.5):
        x = _bn(b, x, f"depthwise_{activation}")
    return x


def block_residual(b, x):
    """y = conv(conv(x)); x + y by Add / tf.add / +, optionally BN after the add, then a ReLU."""
    channels = x.shape[-1]
    y = _conv(b, x, filters=channels, activation=b.pick(("relu", "linear")))
    y = _conv(b, y, filters=channels, activation="linear")
    kind = b.pick(("add_layer", "tf_add", "plus_operator"))
    b.note(kind)
    if kind == "add_layer":
        x = L.Add(name=b.name("add"))([x, y])
    elif kind == "tf_add":
        x = tf.add(x, y)
    else:
        x = x + y
    if b.chance(0.4):
        x = _bn(b, x, "add")
    return _relu(b, x)


def block_downsample_residual(b, x):
    """CIFAR option-A shortcut: x[:, ::2, ::2, :] and tf.pad on channels, added to a strided conv."""
    channels = x.shape[-1]
    if x.shape[1] < 4:
        return block_residual(b, x)
    extra = int(b.pick((2, 4)))
    y = _conv(b, x, filters=channels + extra, strides=2, activation="relu")
    y = _conv(b, y, filters=channels + extra, activation="linear")
    b.note("strided_slice_shortcut")
    shortcut = x[:, ::2, ::2, :] if x.shape.rank == 4 else x[:, ::2, :]
    b.note("tf_pad_channels")
    paddings = [[0, 0]] * (x.shape.rank - 1) + [[extra // 2, extra - extra // 2]]
    shortcut = tf.pad(shortcut, paddings)
    return tf.nn.relu(tf.add(shortcut, y))


def block_pool(b, x):
    if x.shape[1] < 4:
        return block_activation(b, x)
    rank = x.shape.rank
    kind = b.pick(("maxpool", "avgpool", "tf_max_pool2d", "tf_avg_pool2d") if rank == 4 else ("maxpool", "avgpool"))
    b.note(f"{kind}{rank - 2}d")
    if kind == "maxpool":
        x = (L.MaxPooling2D if rank == 4 else L.MaxPooling1D)(2, name=b.name("maxpool"))(x)
    elif kind == "avgpool":
        x = (L.AveragePooling2D if rank == 4 else L.AveragePooling1D)(2, name=b.name("avgpool"))(x)
    elif kind == "tf_max_pool2d":
        x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")
    else:
        x = tf.nn.avg_pool2d(x, ksize=2, strides=2, padding="VALID")
    if b.chance(0.3):
        x = _bn(b, x, "pooling")
    return x


def block_activation(b, x):
    kind = b.pick(("relu_layer", "tf_nn_relu", "relu6_layer", "tf_nn_relu6", "swish_activation", "tf_nn_silu",
                   "tanh_activation", "sigmoid_activation", "leaky_relu"))
    b.note(kind)
    if kind == "relu_layer":
        return L.ReLU(name=b.name("relu"))(x)
    if kind == "tf_nn_relu":
        return tf.nn.relu(x)
    if kind == "relu6_layer":
        return L.ReLU(6.0, name=b.name("relu6"))(x)
    if kind == "tf_nn_relu6":
        return tf.nn.relu6(x)
    if kind == "swish_activation":
        return L.Activation("swish", name=b.name("swish"))(x)
    if kind == "tf_nn_silu":
        return tf.nn.silu(x)
    if kind == "tanh_activation":
        return L.Activation("tanh", name=b.name("tanh"))(x)
    if kind == "sigmoid_activation":
        return L.Activation("sigmoid", name=b.name("sigmoid"))(x)
    return L.LeakyReLU(0.1, name=b.name("leaky"))(x)


def block_constant_op(b, x):
    kind = b.pick(("add_const", "mul_const", "div_const", "const_sub", "negate", "sub_const"))
    b.note(kind)
    c = float(np.round(b.rng.uniform(0.5, 2.0), 3))
    if kind == "add_const":
        return x + c
    if kind == "mul_const":
        return x * c
    if kind == "div_const":
        return x / c
    if kind == "const_sub":
        return c - x
    if kind == "sub_const":
        return x - c
    return -x


def block_hard_swish(b, x):
    kind = b.pick(("hswish_relu6_layer", "hswish_tf_relu6", "hsigmoid_gate"))
    b.note(kind)
    if kind == "hswish_relu6_layer":  # MobileNetV3 as written in keras.applications
        return x * (L.ReLU(6.0, name=b.name("relu6"))(x + 3.0) * (1.0 / 6.0))
    if kind == "hswish_tf_relu6":
        return x * tf.nn.relu6(x + 3.0) / 6.0
    return L.ReLU(6.0, name=b.name("relu6"))(x + 3.0) * (1.0 / 6.0)  # hard-sigmoid alone


def block_dropout(b, x):
    b.note("dropout")
    return L.Dropout(0.2, name=b.name("dropout"))(x)


def block_zero_padding(b, x):
    if x.shape.rank == 4:
        b.note("zeropadding2d")
        x = L.ZeroPadding2D(1, name=b.name("zpad"))(x)
        return L.Conv2D(x.shape[-1], 3, padding="valid", name=b.name("conv2d_valid"))(x)
    b.note("zeropadding1d")
    x = L.ZeroPadding1D(1, name=b.name("zpad"))(x)
    return L.Conv1D(x.shape[-1], 3, padding="valid", name=b.name("conv1d_valid"))(x)


def block_tf_pad_channels(b, x):
    b.note("tf_pad_channels")
    paddings = [[0, 0]] * (x.shape.rank - 1) + [[0, int(b.pick((1, 2)))]]
    return tf.pad(x, paddings)


def block_permute(b, x):
    if x.shape.rank != 4 or x.shape[1] != x.shape[2]:
        return block_activation(b, x)
    kind = b.pick(("permute", "tf_transpose"))
    b.note(kind)
    if kind == "permute":
        return L.Permute((2, 1, 3), name=b.name("permute"))(x)
    return tf.transpose(x, [0, 2, 1, 3])


def block_se(b, x):
    """Squeeze-and-excitation, drawn from the ways tutorials and Keras Applications write it."""
    channels = x.shape[-1]
    rank = x.shape.rank
    spatial = list(range(1, rank - 1))
    squeeze = b.pick(("tf_reduce_mean", "tf_reduce_mean_keepdims", "gap", "gap_keepdims"))
    b.note(f"se_{squeeze}")
    gap = L.GlobalAveragePooling2D if rank == 4 else L.GlobalAveragePooling1D
    if squeeze == "tf_reduce_mean":
        s = tf.reduce_mean(x, spatial)
    elif squeeze == "tf_reduce_mean_keepdims":
        s = tf.reduce_mean(x, spatial, keepdims=True)
    elif squeeze == "gap":
        s = gap(name=b.name("se_gap"))(x)
    else:
        s = gap(keepdims=True, name=b.name("se_gap"))(x)
    keepdims = s.shape.rank == rank
    reduced = max(channels / 2, 1)  # a float, as `C / ratio` in tutorials
    if keepdims and b.chance(0.5):
        b.note("se_1x1_conv_fc")
        conv = L.Conv2D if rank == 4 else L.Conv1D
        s = conv(int(reduced), 1, activation="relu", name=b.name("se_fc1"))(s)
        s = conv(channels, 1, activation="linear", name=b.name("se_fc2"))(s)
    else:
        b.note("se_dense_float_units")
        s = L.Dense(reduced, activation=b.pick(("relu", "swish")), name=b.name("se_fc1"))(s)
        s = L.Dense(channels, name=b.name("se_fc2"))(s)
    gate = b.pick(("sigmoid_activation", "tf_sigmoid", "hard_sigmoid"))
    b.note(f"se_gate_{gate}")
    if gate == "sigmoid_activation":
        s = L.Activation("sigmoid", name=b.name("se_sigmoid"))(s)
    elif gate == "tf_sigmoid":
        s = tf.nn.sigmoid(s)
    else:
        s = L.ReLU(6.0, name=b.name("se_relu6"))(s + 3.0) * (1.0 / 6.0)
    if not keepdims:
        shape = [1] * (rank - 2) + [channels]
        kind = b.pick(("reshape_layer", "tf_reshape"))
        b.note(f"se_{kind}")
        s = L.Reshape(shape, name=b.name("se_reshape"))(s) if kind == "reshape_layer" else tf.reshape(s, [-1, *shape])
    scale = b.pick(("multiply_layer", "tf_multiply", "times_operator"))
    b.note(f"se_{scale}")
    if scale == "multiply_layer":
        return L.Multiply(name=b.name("se_scale"))([x, s])
    if scale == "tf_multiply":
        return tf.multiply(x, s)
    return x * s


def block_cbam(b, x):
    """CBAM (Woo et al. 2018): channel attention (avg+max through an MLP) then spatial attention."""
    if x.shape.rank != 4:
        return block_se(b, x)
    channels = x.shape[-1]
    avg = tf.reduce_mean(x, [1, 2], keepdims=True)
    nested = b.chance(0.5)
    b.note("cbam_nested_reduce_max" if nested else "cbam_reduce_max")
    mx = tf.reduce_max(tf.reduce_max(x, axis=1, keepdims=True), axis=2, keepdims=True) if nested else \
        tf.reduce_max(x, [1, 2], keepdims=True)
    hidden = max(channels // 2, 1)
    if b.chance(0.5):
        b.note("cbam_shared_mlp")
        fc1 = L.Dense(hidden, activation="relu", name=b.name("cbam_fc1"))
        fc2 = L.Dense(channels, name=b.name("cbam_fc2"))
        a, m = fc2(fc1(avg)), fc2(fc1(mx))
    else:
        b.note("cbam_unshared_mlp")
        a = L.Dense(channels, name=b.name("cbam_fc2a"))(L.Dense(hidden, activation="relu", name=b.name("cbam_fc1a"))(avg))
        m = L.Dense(channels, name=b.name("cbam_fc2m"))(L.Dense(hidden, activation="relu", name=b.name("cbam_fc1m"))(mx))
    gate = tf.nn.sigmoid(a + m) if b.chance(0.5) else L.Activation("sigmoid", name=b.name("cbam_cgate"))(
        L.Add(name=b.name("cbam_cadd"))([a, m]))
    x = x * gate
    b.note("cbam_channel_mean_max")
    cmean = tf.reduce_mean(x, axis=-1, keepdims=True)
    cmax = tf.reduce_max(x, axis=-1, keepdims=True)
    if b.chance(0.5):
        b.note("cbam_tf_concat")
        both = tf.concat([cmean, cmax], axis=-1)
    else:
        b.note("cbam_concatenate_layer")
        both = L.Concatenate(axis=-1, name=b.name("cbam_concat"))([cmean, cmax])
    kernel = int(b.pick((3, 7)))
    b.note(f"cbam_spatial_{kernel}x{kernel}")
    spatial = L.Conv2D(1, kernel, padding="same", activation=b.pick(("sigmoid", "linear")),
                       name=b.name("cbam_spatial"))(both)
    if spatial._keras_history.layer.activation.__name__ == "linear":
        spatial = tf.nn.sigmoid(spatial)
    return L.Multiply(name=b.name("cbam_scale"))([x, spatial])


BLOCKS = (block_conv, block_conv_bn, block_conv_act_bn, block_depthwise, block_residual, block_downsample_residual,
          block_pool, block_activation, block_constant_op, block_hard_swish, block_dropout, block_zero_padding,
          block_tf_pad_channels, block_permute, block_se, block_cbam)


# ---------------------------------------------------------------- input preprocessing and heads

def _preprocess(b, x):
    kind = b.pick(("none", "none", "rescaling", "normalization", "input_bn"))
    if kind == "none":
        return x
    b.note(kind)
    if kind == "rescaling":
        return L.Rescaling(1.0 / 2.0, offset=-0.25, name=b.name("rescaling"))(x)
    if kind == "normalization":
        channels = x.shape[-1]
        mean = b.rng.normal(0.0, 0.2, channels).astype(np.float32)
        variance = b.rng.uniform(0.5, 2.0, channels).astype(np.float32)
        return L.Normalization(axis=-1, mean=mean, variance=variance, name=b.name("normalization"))(x)
    return _bn(b, x, "input")


def _head(b, x, classes, final_scale):
    rank = x.shape.rank
    kind = b.pick(("gap", "gmp", "tf_reduce_mean", "flatten"))
    b.note(f"head_{kind}")
    if kind == "gap":
        x = (L.GlobalAveragePooling2D if rank == 4 else L.GlobalAveragePooling1D)(name=b.name("gap"))(x)
    elif kind == "gmp":
        x = (L.GlobalMaxPooling2D if rank == 4 else L.GlobalMaxPooling1D)(name=b.name("gmp"))(x)
    elif kind == "tf_reduce_mean":
        x = tf.reduce_mean(x, list(range(1, rank - 1)))
    else:
        x = L.Flatten(name=b.name("flatten"))(x)
    if b.chance(0.3):
        b.note("head_hidden_dense")
        x = L.Dense(8, activation=b.pick(("relu", "swish", "tanh")), name=b.name("dense"))(x)
    if b.chance(0.3):
        x = block_dropout(b, x)
    init = keras.initializers.RandomNormal(0.0, final_scale / np.sqrt(x.shape[-1]), seed=b.count)
    out = b.pick(("logits", "dense_softmax", "softmax_layer", "tf_softmax"))
    b.note(f"output_{out}")
    if out == "dense_softmax":
        return L.Dense(classes, activation="softmax", kernel_initializer=init, name="predictions")(x)
    logits = L.Dense(classes, kernel_initializer=init, name="logits")(x)
    if out == "softmax_layer":
        return L.Softmax(name="probabilities")(logits)
    if out == "tf_softmax":
        return tf.nn.softmax(logits)
    return logits


def random_model(seed, classes=3, final_scale=3.0):
    """A random functional model (float, untrained, seeded weights) for ``seed``; see the module docstring."""
    b = _Builder(seed)
    keras.utils.set_random_seed(seed)  # the layers' own initializers draw from Keras' global seed
    rank = 4 if b.chance(0.65) else 3
    channels = int(b.pick((1, 2, 3)))
    shape = (8, 8, channels) if rank == 4 else (16, channels)
    b.note(f"input_{rank - 2}d")
    inputs = keras.Input(shape, name="input")
    x = _preprocess(b, inputs)
    x = _conv(b, x, activation=b.pick(("relu", "linear", "swish")))  # a stem: some channels to attend over
    for _ in range(int(b.rng.integers(2, 6))):
        x = b.pick(BLOCKS)(b, x)
    outputs = _head(b, x, classes, final_scale)
    model = keras.Model(inputs, outputs, name=f"random_{seed}")
    model.generated_kinds = list(b.kinds)
    return model


def random_data(model, seed, classes=3, per_class=12):
    """(x, y): ``per_class`` standard-normal samples per class shaped for ``model``'s input."""
    rng = np.random.default_rng(10_000 + seed)
    x = rng.normal(0.0, 1.0, (classes * per_class, *model.input_shape[1:])).astype(np.float32)
    y = np.repeat(np.arange(classes), per_class)
    return x, y


def train_briefly(model, x, y, epochs=20, seed=0):
    """A short float training on ``(x, y)`` (Adam 1e-2), as the user's model would have been trained.

    An untrained network's pooled features are dominated by their mean, so its logits are nearly the
    same for every sample; after a short fit they depend on the input, as a trained model's do, which is
    what an output SNR can judge. Seeded; a model ending in a softmax is trained on probabilities.
    """
    keras.utils.set_random_seed(seed)
    logits = "output_logits" in model.generated_kinds
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
    model.fit(x, y, epochs=epochs, batch_size=12, shuffle=True, verbose=0)


def randomize_weights(model, rng, keep=()):
    """Normal(0, 0.5) weights for every layer of ``model`` but those named in ``keep``."""
    for layer in model.layers:
        weights = layer.get_weights()
        if weights and layer.name not in keep:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in weights])


def normal_samples(model, n=16, seed=1):
    """``n`` standard-normal float32 samples shaped for ``model``'s input."""
    return np.random.default_rng(seed).normal(size=(n, *model.input_shape[1:])).astype("float32")
